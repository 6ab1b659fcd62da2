"""Checked as an operator would: Debian's Prometheus scrapes a running api (in-process) and worker
(a `linkrift worker` process) with the shipped alert rules loaded, and every expression of the
provisioned dashboard and of the alerts is evaluated through Prometheus' HTTP API.

- every dashboard expression returns a series, and every series an alert selects exists;
- every rule evaluates without error;
- a stalled sink (the `clicks` table locked in a held transaction) makes the click consumer lag
  rise within two scrapes and stay there, the worker's /readyz turns 503, and both recover when the
  lock is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import yaml

from cli.procs import free_port
from tests.fakes.api import serve_settings
from tests.pipeline_fixtures import Pipeline, raw_click, running_pipeline, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/linkrift.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
PROMETHEUS = "/usr/bin/prometheus"
SCRAPE_SECONDS = 1
WORKER_ENV = {
    "LINKRIFT_CONSUMER_LAG_INTERVAL_SECONDS": "0.25",
    "LINKRIFT_WORKER_STALL_SECONDS": "3",
    "LINKRIFT_LOG_FORMAT": "json",
    "LINKRIFT_LOG_LEVEL": "INFO",
}
SELECTOR = re.compile(r"\b(linkrift_[a-z_]+|up)(\{[^}]*\})?")


def dashboard_queries() -> list[str]:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    out = []
    for expr in walk(json.loads(DASHBOARD.read_text())):
        label_values = re.fullmatch(r"label_values\((.*), *\w+\)", expr)
        expr = label_values.group(1) if label_values else expr
        out.append(expr.replace("$__rate_interval", "30s").replace("$instance", ".*"))
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


class Prometheus:
    """Debian's prometheus on a free loopback port; stopped by PID."""

    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.workdir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log_tail(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    async def query(self, http: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
        async with http.get(f"{self.url}/api/v1/query", params={"query": expr}) as resp:
            body = await resp.json()
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def value(self, http: aiohttp.ClientSession, expr: str) -> float | None:
        result = await self.query(http, expr)
        return float(result[0]["value"][1]) if result else None


@pytest_asyncio.fixture
async def platform(
    tmp_path: Path, make_settings: Any, database_url: str, broker: Any, namespace: str, redis_client: Any
) -> AsyncIterator[tuple[Pipeline, Any, Prometheus]]:
    async with running_pipeline(
        tmp_path, database_url, broker.bootstrap, namespace, redis_client, WORKER_ENV
    ) as p:
        settings = make_settings(
            database_url=database_url,
            kafka_broker=broker.url,
            worker_url=p.worker.url,
            internal_token=p.token,
            access_log_sample=1.0,
        )
        async with serve_settings(settings) as api:
            api_target = f"127.0.0.1:{api.client.server.port}"
            prometheus = Prometheus(
                tmp_path / "prometheus",
                {"linkrift-api": api_target, "linkrift-worker": f"127.0.0.1:{p.worker.port}"},
            )
            try:
                prometheus.start()
                yield p, api, prometheus
            finally:
                prometheus.stop()


async def _traffic(api: Any) -> str:
    """Redirects (found, unknown), API answers (201, 200, 401, 422) and one QR-less click path;
    returns the link's id."""
    created = await api.client.post(
        "/api/v1/links", json={"url": "https://example.com/observed"}, headers=api.auth
    )
    assert created.status == 201, await created.text()
    link = await created.json()
    code = link["short_code"]
    for _ in range(5):
        resp = await api.client.get(f"/{code}", allow_redirects=False)
        assert resp.status in (301, 302, 307, 308)
    assert (await api.client.get("/no-such-code-here", allow_redirects=False)).status == 404
    assert (await api.client.get("/api/v1/links", headers=api.auth)).status == 200
    assert (await api.client.get("/api/v1/links")).status == 401
    bad = await api.client.post("/api/v1/links", json={"url": "not a url"}, headers=api.auth)
    assert bad.status in (400, 422)
    return str(link["id"])


async def test_every_dashboard_and_alert_expression_returns_data_and_a_sink_stall_raises_lag(
    platform: tuple[Pipeline, Any, Prometheus],
) -> None:
    p, api, prom = platform
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        link_id = await _traffic(api)

        async def both_up() -> bool:
            try:
                result = await prom.query(http, 'up{job=~"linkrift-.*"} == 1')
            except (aiohttp.ClientError, AssertionError):
                return False
            return len(result) == 2

        assert await wait_until(both_up, within=20), prom.log_tail()

        async def clicks_processed() -> bool:
            value = await prom.value(http, "sum(linkrift_clicks_processed_total)")
            return bool(value and value >= 5)

        assert await wait_until(clicks_processed, within=30), p.worker.log_tail()
        await asyncio.sleep(3 * SCRAPE_SECONDS)  # rates need two samples after the traffic

        empty = [expr for expr in dashboard_queries() if not await prom.query(http, expr)]
        assert not empty, f"dashboard expressions without data: {empty}"

        for rule in alert_rules():
            await prom.query(http, rule["expr"])  # evaluates (status success)
            for name, matchers in SELECTOR.findall(rule["expr"]):
                selector = f"{name}{matchers}"
                assert await prom.query(http, selector), f"{rule['alert']}: {selector} has no series"

        async def rules_evaluated() -> list[dict[str, Any]] | None:
            async with http.get(f"{prom.url}/api/v1/rules") as resp:
                groups = (await resp.json())["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return (
                rules if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else None
            )

        rules = await wait_until(rules_evaluated, within=10)
        assert rules and len(rules) == len(alert_rules())
        assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]

        # -------------------------------------------------------------- a stalled sink
        lag_expr = 'sum(linkrift_consumer_lag{job="linkrift-worker", topic=~".*clicks.raw"})'
        assert await prom.value(http, lag_expr) == 0
        link = {"id": link_id, "workspace_id": api.workspace_id, "short_code": "x"}
        locker = await asyncpg.connect(p.database_url)
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE clicks IN ACCESS EXCLUSIVE MODE")
            acked = time.time()
            await p.send(raw_click(link, visitor=f"v{i}", ua="curl/8") for i in range(100))

            async def lag_seen() -> float | None:
                value = await prom.value(http, lag_expr)
                return value if value else None

            assert await wait_until(lag_seen, within=15), p.worker.log_tail()
            # The samples Prometheus took after the clicks were acknowledged: lag shows by the second.
            samples = await prom.query(
                http,
                f'linkrift_click_consumer_lag_total{{job="linkrift-worker"}}[{int(time.time() - acked) + 2}s]',
            )
            after = [float(v) for ts, v in samples[0]["values"] if float(ts) > acked]
            first_positive = next(i for i, v in enumerate(after) if v > 0)
            assert first_positive <= 1, after

            async def all_hundred_waiting() -> bool:
                return await prom.value(http, lag_expr) == 100

            assert await wait_until(all_hundred_waiting, within=10), await prom.value(http, lag_expr)

            async def worker_unready() -> bool:
                async with http.get(f"{p.worker.url}/readyz") as resp:
                    return resp.status == 503

            assert await wait_until(worker_unready, within=10)
            assert await prom.value(http, lag_expr) == 100, "lag must hold while the sink is stalled"
        finally:
            with contextlib.suppress(Exception):
                await tx.rollback()
            await locker.close()

        async def drained() -> bool:
            return await prom.value(http, lag_expr) == 0

        assert await wait_until(drained, within=30), p.worker.log_tail()

        async def worker_ready() -> bool:
            async with http.get(f"{p.worker.url}/readyz") as resp:
                return resp.status == 200

        assert await wait_until(worker_ready, within=10)
        rows = await p.pg("SELECT count(*) AS n FROM clicks WHERE link_id = $1", uuid.UUID(link_id))
        assert rows[0]["n"] == 105


async def test_worker_logs_json_and_names_the_clicks_it_drops(
    pipeline: Pipeline,
    database_url: str,
) -> None:
    """LINKRIFT_LOG_FORMAT=json holds for the worker (Faust's own logging setup is overridden):
    every line is one JSON object with a millisecond UTC timestamp; a re-sent click is dropped
    with its event_id and request_id logged, so it can be followed from the api's logs."""
    from tests.pipeline_fixtures import make_links

    link = (await make_links(database_url, 1, 1))[0]
    click = raw_click(link, visitor="v1", ua="curl/8")
    click.request_id = f"req-{uuid.uuid4().hex}"
    await pipeline.send([click])
    await pipeline.send([click])  # the same event id again: a re-send
    await pipeline.producer.send_and_wait(pipeline.topics.clicks_raw, b"{not json", key=link["id"].encode())
    assert pipeline.worker.proc is not None
    log_path = pipeline.worker.proc.log_path

    def lines() -> list[str]:
        return [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]

    async def dropped_logged() -> bool:
        text = "\n".join(lines())
        return click.event_id in text and "dropping malformed click" in text

    assert await wait_until(dropped_logged, within=30), pipeline.worker.log_tail()
    records = [json.loads(line) for line in lines()]  # every line is JSON
    ts = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
    assert all(ts.fullmatch(r["ts"]) and r["level"] and r["logger"] for r in records), records[:3]
    resent = next(r for r in records if click.event_id in r["msg"])
    assert "re-sent" in resent["msg"] and f"request_id={click.request_id}" in resent["msg"]
    assert any(r["logger"].startswith(("faust", "mode")) for r in records), (
        "Faust's lines go through our format"
    )
