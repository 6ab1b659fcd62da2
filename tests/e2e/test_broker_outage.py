"""Broker outage during traffic: the broker goes away for several seconds while clicks keep
coming, then returns. Clicks are journaled by the same ClickEmitter the redirect uses, the worker
rides out the outage, and after the replay every store is exact.

Two ways: (1) the broker sits behind a TCP proxy that advertises itself and the proxy is cut
(every connection reset, new ones refused): the network outage; (2) the broker process itself is
stopped and started again on the same port, keeping its log in S3 (tansu's `s3://` storage on a
local moto server): the restart. tansu's default memory storage would lose everything on a
restart, and this test then fails (checked; docs/embedded.md).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from api.click_journal import ClickEmitter, open_journal
from cli.procs import free_port
from cli.services import TansuBroker
from engine.naming import Topics
from tests.fakes.s3_server import S3Server
from tests.fakes.tcp_proxy import TcpProxy
from tests.pipeline_fixtures import (
    GOOGLEBOT_UA,
    HUMAN_UA,
    assert_postgres_exact,
    ground_truth,
    make_links,
    raw_click,
    running_pipeline,
    settled,
    wait_until,
)

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[TansuBroker, TcpProxy]]:
    proxy_port = free_port()
    broker = TansuBroker(tmp_path / "tansu", advertised=f"127.0.0.1:{proxy_port}")
    proxy = TcpProxy(proxy_port, "127.0.0.1", broker.port)
    await proxy.start()
    await broker.start()
    try:
        yield broker, proxy
    finally:
        await proxy.stop()
        await asyncio.to_thread(broker.stop)


async def test_clicks_during_a_broker_outage_are_counted_exactly_once(
    tmp_path: Path,
    proxied: tuple[TansuBroker, TcpProxy],
    database_url: str,
    namespace: str,
    redis_client: Any,
) -> None:
    _, proxy = proxied
    await _clicks_through_an_outage(
        tmp_path, proxy.address, database_url, namespace, redis_client, cut=proxy.stop, restore=proxy.start
    )


@pytest_asyncio.fixture
async def persistent_broker(tmp_path: Path) -> AsyncIterator[TansuBroker]:
    s3 = await asyncio.to_thread(S3Server(tmp_path / "s3").start)
    broker = TansuBroker(tmp_path / "tansu", storage=f"s3://{s3.bucket}/", env=s3.tansu_env)
    try:
        await broker.start()
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(s3.stop)


async def test_clicks_across_a_broker_restart_are_counted_exactly_once(
    tmp_path: Path,
    persistent_broker: TansuBroker,
    database_url: str,
    namespace: str,
    redis_client: Any,
) -> None:
    broker = persistent_broker

    async def stop() -> None:
        await asyncio.to_thread(broker.stop)

    async def start() -> None:
        await broker.start()

    await _clicks_through_an_outage(
        tmp_path, broker.bootstrap, database_url, namespace, redis_client, cut=stop, restore=start
    )


async def _clicks_through_an_outage(
    tmp_path: Path,
    bootstrap: str,
    database_url: str,
    namespace: str,
    redis_client: Any,
    *,
    cut: Callable[[], Awaitable[None]],
    restore: Callable[[], Awaitable[None]],
) -> None:
    topics = Topics(namespace)
    async with running_pipeline(tmp_path, database_url, bootstrap, namespace, redis_client) as p:
        worker = p.worker
        emitter = ClickEmitter(bootstrap, topics.clicks_raw, open_journal(tmp_path / "journal"))
        try:
            await emitter.start()
            links = await make_links(database_url, workspaces=2, links_per_workspace=3)
            rng = random.Random(3)
            clicks = [
                raw_click(
                    rng.choice(links),
                    visitor=f"v{rng.randrange(80)}",
                    ua=GOOGLEBOT_UA if rng.random() < 0.1 else HUMAN_UA,
                    ts=time.time() + i / 1e4,
                )
                for i in range(3000)
            ]
            truth = ground_truth(clicks)

            async def counted() -> int:
                return sum([(await p.redis_counts(x["id"]))[0] for x in links])

            # The worker is past start-up (topics declared, group joined) before the outage.
            for click in clicks[:50]:
                emitter.emit(click)

            async def warmed_up() -> bool:
                return await counted() >= 50

            assert await wait_until(warmed_up, within=60), worker.log_tail()
            degraded_seen = False
            for i, click in enumerate(clicks[50:], start=50):
                if i == 800:
                    await cut()
                    outage_started = time.monotonic()
                if i == 2200:
                    # At least 6 s without a broker: longer than the worker's 3 s session timeout.
                    await asyncio.sleep(max(0.0, 6.0 - (time.monotonic() - outage_started)))
                    degraded_seen = emitter.degraded
                    await restore()
                emitter.emit(click)  # never raises, never waits: the redirect answers meanwhile
                if i % 100 == 99:
                    await asyncio.sleep(0.1)
            assert degraded_seen, "the emitter should have noticed the outage and spooled"

            async def done() -> bool:
                return await counted() >= len(clicks)

            assert await wait_until(done, within=120), (await counted(), worker.log_tail())
            # Redis is written before ClickHouse and PostgreSQL in each batch: wait for all of them.
            await settled(p, {x["id"]: truth.per_link.get(x["id"], (0, 0)) for x in links})
            await asyncio.sleep(2)  # a double count would show now
            assert emitter.depth() == 0
            for link in links:
                n, unique = truth.per_link.get(link["id"], (0, 0))
                assert await p.redis_counts(link["id"]) == (n, unique), link
                assert await p.ch_count(link["id"]) == {"rows": n, "distinct_events": n}
            await assert_postgres_exact(p, truth, links)
        finally:
            await emitter.stop()
