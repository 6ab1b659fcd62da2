"""What operators read from the api: request ids, RED metrics per route template, health that
separates liveness from readiness (and keeps Kafka out of readiness), and the log lines."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from cli.logs import JsonFormatter, KvFormatter, RequestIdFilter
from cli.procs import free_port
from engine.clicks.models import RawClick
from tests.fakes.api import serve_settings
from tests.integration.helpers import record_clicks

pytestmark = pytest.mark.integration

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def add_link(database_url: str, h: Any, code: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return str(
            await conn.fetchval(
                "INSERT INTO links (user_id, workspace_id, short_code, url) VALUES ($1, $2, $3, $4) RETURNING id",
                h.user_id, h.workspace_id, code, "https://dest.example/",
            )
        )  # fmt: skip
    finally:
        await conn.close()


async def test_request_id_is_echoed_generated_and_carried_into_the_click(api: Any, database_url: str) -> None:
    code = f"r{uuid.uuid4().hex[:8]}"
    await add_link(database_url, api, code)
    clicks = record_clicks(api)
    given = "edge-4bf92f3577b34da6a3ce929d0e0e4736"
    resp = await api.client.get(f"/{code}", headers={"X-Request-ID": given}, allow_redirects=False)
    assert resp.status in (301, 302, 307, 308)
    assert resp.headers["X-Request-ID"] == given
    assert clicks[-1].request_id == given
    # The id travels with the click on the wire (an older consumer ignores it).
    assert RawClick.loads(clicks[-1].dumps()).request_id == given

    generated = await api.client.get(f"/{code}", allow_redirects=False)
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
    assert clicks[-1].request_id == generated.headers["X-Request-ID"]

    for bad in ("x" * 200, "has spaces in it", "semi;colon", "new\u2028line"):
        resp = await api.client.get("/api/v1/links", headers={"X-Request-ID": bad})
        echoed = resp.headers["X-Request-ID"]
        assert echoed != bad and re.fullmatch(r"[0-9a-f]{32}", echoed)
    # API errors (JSON shape) and aiohttp-raised answers carry it too.
    assert (await api.client.get("/api/v1/links")).headers.get("X-Request-ID")
    assert (await api.client.get("/a/b/c/unknown")).headers.get("X-Request-ID")


async def test_red_metrics_per_route_template_and_status_class(api: Any) -> None:
    route = "/api/v1/links/{link_id}"
    before_401 = sample("linkrift_http_requests_total", route=route, method="GET", status="4xx")
    before_count = sample("linkrift_http_request_duration_seconds_count", route=route, method="GET")
    for _ in range(3):
        assert (await api.client.get(f"/api/v1/links/{uuid.uuid4()}")).status == 401
    not_found = await api.client.get(f"/api/v1/links/{uuid.uuid4()}", headers=api.auth)
    assert not_found.status == 404
    assert sample("linkrift_http_requests_total", route=route, method="GET", status="4xx") == before_401 + 4
    assert (
        sample("linkrift_http_request_duration_seconds_count", route=route, method="GET") == before_count + 4
    )
    # The 5xx series of a route exists before its first 5xx (the alert divides by it).
    assert (
        REGISTRY.get_sample_value(
            "linkrift_http_requests_total", {"route": route, "method": "GET", "status": "5xx"}
        )
        is not None
    )
    # Unknown paths and odd methods are not label values.
    await api.client.request("PROPFIND", f"/api/v1/zzz/{uuid.uuid4()}")
    labels = {
        (s.labels["route"], s.labels["method"])
        for metric in REGISTRY.collect()
        if metric.name == "linkrift_http_requests"
        for s in metric.samples
    }
    assert all("zzz" not in route for route, _ in labels)
    assert all(
        method in {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
        for _, method in labels
    )
    assert ("unmatched", "other") in labels


async def test_readiness_ignores_kafka_and_healthz_reports_it(make_settings: Any, database_url: str) -> None:
    # A broker address nothing listens on: the api spools, so it stays ready.
    settings = make_settings(database_url=database_url, kafka_broker=f"kafka://127.0.0.1:{free_port()}")
    async with serve_settings(settings) as h:
        live = await h.client.get("/livez")
        assert live.status == 200
        ready = await h.client.get("/readyz")
        body = await ready.json()
        assert ready.status == 200, body
        assert body["checks"] == {"postgres": "ok", "redis": "ok"}
        deep = await h.client.get("/healthz")
        deep_body = await deep.json()
        assert deep.status == 503 and deep_body["checks"]["kafka"] == "fail"


async def test_readiness_fails_without_postgres(make_settings: Any, database_url: str) -> None:
    settings = make_settings(database_url=database_url)
    async with serve_settings(settings) as h:
        pool = h.client.server.app
        from api.state import PG

        await pool[PG].close()  # PostgreSQL gone for this process
        ready = await h.client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"]["postgres"] == "fail"
        assert (await h.client.get("/livez")).status == 200


def test_log_lines_have_ms_utc_timestamps_and_the_request_id() -> None:
    from engine.observability import REQUEST_ID

    record = logging.LogRecord("linkrift.test", logging.ERROR, __file__, 1, "boom code=%s", ("x",), None)
    token = REQUEST_ID.set("req-123")
    try:
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    kv = KvFormatter().format(record)
    assert re.fullmatch(
        rf"ts={TS.pattern} level=ERROR logger=linkrift.test msg=boom code=x request_id=req-123", kv
    )
    import orjson

    data = orjson.loads(JsonFormatter().format(record))
    assert TS.fullmatch(data["ts"]) and data["request_id"] == "req-123" and data["msg"] == "boom code=x"


async def test_unhandled_error_logs_method_host_status_and_request_id(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = api.client.server.app

    async def broken(request: Any) -> Any:
        raise RuntimeError("kaboom")

    # Swap a route's handler for one that fails (test only): /livez goes through the same
    # front middleware as every page outside /api/.
    routes = [r for r in app.router.routes() if r.resource is not None and r.resource.canonical == "/livez"]
    saved = [r._handler for r in routes]
    for r in routes:
        r._handler = broken
    caplog.set_level(logging.ERROR, logger="api.errors")
    caplog.handler.addFilter(RequestIdFilter())  # what cli.logs puts on the process's handler
    try:
        resp = await api.client.get("/livez", headers={"X-Request-ID": "trace-me-42"})
    finally:
        for r, handler in zip(routes, saved, strict=True):
            r._handler = handler
    assert resp.status == 500 and resp.headers["X-Request-ID"] == "trace-me-42"
    line = next(r for r in caplog.records if "unhandled error" in r.getMessage())
    msg = line.getMessage()
    assert "method=GET" in msg and "path=/livez" in msg and "status=500" in msg and "host=127.0.0.1" in msg
    assert line.request_id == "trace-me-42"  # type: ignore[attr-defined]
