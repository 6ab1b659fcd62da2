"""Health and metrics endpoints.

- `/livez`: the process is up and its event loop answers (restart it when this fails).
- `/readyz`: it can do its job: PostgreSQL and Redis answer (take it out of the load balancer
  when this fails). Kafka is reported but never makes it unready: when the broker is away the
  api keeps redirecting and spools clicks (`spooling: true`); ClickHouse only serves analytics.
- `/healthz`: the deep diagnostic: every backing service, Kafka and ClickHouse included; 503 when
  any of them fails. For people and dashboards, not for orchestrators.
- `/metrics`: Prometheus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.errors import json_response
from api.state import ANALYTICS, EMITTER, PG, REDIS, SETTINGS

routes = web.RouteTableDef()
CHECK_TIMEOUT = 2.0


async def _check(name: str, probe: Awaitable[object]) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
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


async def _redis_ok(request: web.Request) -> None:
    await cast("Awaitable[bool]", request.app[REDIS].ping())


async def _pg_ok(request: web.Request) -> None:
    async with request.app[PG].acquire() as conn:
        await conn.fetchval("SELECT 1")


async def _ch_ok(request: web.Request) -> None:
    result = await request.app[ANALYTICS].run("ping", {})
    if not result.get("ok"):
        raise RuntimeError("clickhouse did not answer SELECT 1")


def _answer(results: list[tuple[str, str | None]], extra: dict[str, object]) -> web.Response:
    failing = {name: err for name, err in results if err}
    body = {
        "status": "ok" if not failing else "unavailable",
        "checks": {name: ("ok" if not err else "fail") for name, err in results},
        "errors": failing,
        **extra,
    }
    return json_response(body, 200 if not failing else 503)


@routes.get("/livez")
async def livez(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    results = await asyncio.gather(
        _check("postgres", _pg_ok(request)),
        _check("redis", _redis_ok(request)),
    )
    emitter = request.app[EMITTER]
    return _answer(list(results), {"spooling": emitter.degraded, "journal_depth": emitter.depth()})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    results = await asyncio.gather(
        _check("postgres", _pg_ok(request)),
        _check("redis", _redis_ok(request)),
        _check("kafka", _broker_ok(request)),
        _check("clickhouse", _ch_ok(request)),
    )
    return _answer(list(results), {"journal_depth": request.app[EMITTER].depth()})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
