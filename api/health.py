"""/healthz (every backing service answers) and /metrics (Prometheus)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.errors import json_response
from api.state import ANALYTICS, EMITTER, PG, REDIS, SETTINGS

routes = web.RouteTableDef()
CHECK_TIMEOUT = 2.0


async def _check(name: str, probe: object) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)  # type: ignore[arg-type]
        return name, None
    except Exception as exc:
        return name, f"{type(exc).__name__}: {exc}"[:200]


async def _broker_ok(request: web.Request) -> None:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=request.app[SETTINGS].kafka_bootstrap, request_timeout_ms=2000)
    try:
        await client.bootstrap()
    finally:
        await client.close()


async def _pg_ok(request: web.Request) -> None:
    async with request.app[PG].acquire() as conn:
        await conn.fetchval("SELECT 1")


async def _ch_ok(request: web.Request) -> None:
    result = await request.app[ANALYTICS].run("ping", {})
    if not result.get("ok"):
        raise RuntimeError("clickhouse did not answer SELECT 1")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    results = await asyncio.gather(
        _check("postgres", _pg_ok(request)),
        _check("redis", request.app[REDIS].ping()),
        _check("kafka", _broker_ok(request)),
        _check("clickhouse", _ch_ok(request)),
    )
    failing = {name: err for name, err in results if err}
    checks = {name: ("ok" if not err else "fail") for name, err in results}
    body = {
        "status": "ok" if not failing else "unavailable",
        "checks": checks,
        "errors": failing,
        "journal_depth": request.app[EMITTER].depth(),
    }
    return json_response(body, 200 if not failing else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
