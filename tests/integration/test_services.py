"""cli.services and cli.procs against real processes: tansu, embedded PostgreSQL and Redis, process groups."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cli.procs import ManagedProcess, free_port, group_members, pid_alive, port_open, wait_for_port
from cli.services import (
    EmbeddedPostgres,
    EmbeddedRedis,
    TansuBroker,
    ensure_topics,
    postgres_reachable,
    redis_reachable,
    resolve_services,
)
from engine.config import load_settings

pytestmark = pytest.mark.integration

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[TansuBroker]:
    tansu = await TansuBroker(tmp_path).start()
    yield tansu
    tansu.stop()


def _topic() -> str:
    return f"test.services.{uuid.uuid4().hex[:8]}"


async def _partitions(bootstrap: str, topic: str) -> set[int] | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        return consumer.partitions_for_topic(topic)
    finally:
        await consumer.stop()


async def _round_trip(bootstrap: str, topic: str, values: list[bytes]) -> list[bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        got: list[bytes] = []
        async with asyncio.timeout(15):
            while len(got) < len(values):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(r.value for r in records if r.value is not None)
        return got
    finally:
        await consumer.stop()


def test_free_port_is_bindable_and_closed() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert not port_open("127.0.0.1", port)


async def test_tansu_round_trip_and_stop(broker: TansuBroker) -> None:
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.url == f"kafka://127.0.0.1:{broker.port}"
    assert broker.startup_seconds is not None and broker.startup_seconds < 10
    values = [f"v{i}".encode() for i in range(5)]
    assert await _round_trip(broker.bootstrap, _topic(), values) == values

    pid = broker.pid
    assert pid is not None
    broker.stop()
    assert not pid_alive(pid)
    assert not port_open("127.0.0.1", broker.port)


async def test_tansu_restart_same_port(broker: TansuBroker) -> None:
    port, old_pid = broker.port, broker.pid
    await broker.restart()
    assert broker.port == port and broker.pid != old_pid
    assert old_pid is not None and not pid_alive(old_pid)
    assert await _round_trip(broker.bootstrap, _topic(), [b"after-restart"]) == [b"after-restart"]


async def test_tansu_kill_then_restart(broker: TansuBroker) -> None:
    pid = broker.pid
    broker.kill()
    assert pid is not None and not pid_alive(pid)
    await broker.restart()
    assert broker.alive


async def test_ensure_topics_idempotent_with_partitions(broker: TansuBroker) -> None:
    eight, three = _topic(), _topic()
    await ensure_topics(broker.bootstrap, {eight: 8, three: 3})
    await ensure_topics(broker.bootstrap, {eight: 8, three: 3})
    assert await _partitions(broker.bootstrap, eight) == set(range(8))
    assert await _partitions(broker.bootstrap, three) == set(range(3))


def test_managed_process_stop_kills_whole_group(tmp_path: Path) -> None:
    proc = ManagedProcess("sleepers", ["sh", "-c", "sleep 100 & sleep 100"], log_dir=tmp_path).start()
    assert proc.pid is not None
    deadline = time.monotonic() + 5
    while len(members := group_members(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(members) == 3, members  # sh and both sleeps
    proc.stop(timeout=5)
    assert not proc.alive
    assert all(not pid_alive(pid) for pid in members)
    assert group_members(proc.pid) == []


def test_managed_process_context_and_kill(tmp_path: Path) -> None:
    port = free_port()
    server = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    with ManagedProcess("http", server, log_dir=tmp_path) as proc:
        wait_for_port("127.0.0.1", port, 10, proc=proc)
        pid = proc.pid
    assert pid is not None and not pid_alive(pid)
    proc.start()
    wait_for_port("127.0.0.1", port, 10, proc=proc)
    proc.kill()
    assert proc.returncode == -9
    assert (tmp_path / "http.log").exists()


async def test_embedded_postgres(tmp_path: Path) -> None:
    pg = await EmbeddedPostgres(tmp_path / "postgres", durable=False).start()
    try:
        assert pg.dsn.startswith("postgresql://postgres@127.0.0.1:")
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        finally:
            await conn.close()
    finally:
        pg.stop()
    assert pg.pid is not None and not pid_alive(pg.pid)
    assert not await postgres_reachable(pg.dsn, timeout=1)


async def test_embedded_redis(tmp_path: Path) -> None:
    rd = await EmbeddedRedis(tmp_path / "redis").start()
    try:
        client = aioredis.from_url(rd.url)
        try:
            await client.set("k", "v")
            assert await client.get("k") == b"v"
            assert (await client.config_get("bind"))["bind"] == "127.0.0.1"
        finally:
            await client.aclose()
    finally:
        rd.stop()
    assert rd.pid is not None and not pid_alive(rd.pid)
    assert not await redis_reachable(rd.url, timeout=1)


async def test_reachability_checks_fail_fast_on_closed_ports() -> None:
    port = free_port()
    assert not await postgres_reachable(f"postgresql://postgres@127.0.0.1:{port}/x", timeout=1)
    assert not await redis_reachable(f"redis://127.0.0.1:{port}/0", timeout=1)


async def test_resolve_services_reuses_reachable_and_starts_tansu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (await postgres_reachable(LOCAL_PG) and await redis_reachable(LOCAL_REDIS)):
        pytest.skip("needs the local PostgreSQL and Redis")
    monkeypatch.delenv("KAFKA_BROKER", raising=False)
    settings = load_settings(database_url=LOCAL_PG, redis_url=LOCAL_REDIS)
    services = await resolve_services(settings, tmp_path)
    try:
        assert services.database_url == LOCAL_PG
        assert services.redis_url == LOCAL_REDIS
        assert [s.name for s in services.started] == ["kafka"]
        assert services.kafka_broker.startswith("kafka://127.0.0.1:")
        assert services.env()["KAFKA_BROKER"] == services.kafka_broker
        assert await _round_trip(services.kafka_bootstrap, _topic(), [b"x"]) == [b"x"]
        tansu = services.started[0]
        assert isinstance(tansu, TansuBroker)
    finally:
        services.stop()
    assert services.started == []
    assert tansu.pid is not None and not pid_alive(tansu.pid)


async def test_resolve_services_falls_back_to_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = free_port()
    monkeypatch.setenv("KAFKA_BROKER", "127.0.0.1:9")
    settings = load_settings(
        database_url=f"postgresql://postgres@127.0.0.1:{dead}/linkrift_test",
        redis_url=f"redis://127.0.0.1:{dead}/0",
    )
    services = await resolve_services(settings, tmp_path)
    try:
        assert [s.name for s in services.started] == ["postgres", "redis"]
        assert services.kafka_broker == "kafka://127.0.0.1:9"  # configured: used as is, not started
        assert services.database_url.endswith("/linkrift_test")
        conn = await asyncpg.connect(services.database_url)
        await conn.close()
        assert await redis_reachable(services.redis_url)
        assert (tmp_path / "postgres" / "data" / "PG_VERSION").exists()
        pids = [
            s.process.pid
            for s in services.started
            if isinstance(s, EmbeddedPostgres | EmbeddedRedis) and s.process
        ]
    finally:
        services.stop()
    assert all(pid is not None and not pid_alive(pid) for pid in pids)


async def test_embedded_postgres_takes_over_from_orphan(tmp_path: Path) -> None:
    # A parent killed with SIGKILL leaves its postmaster running; the next start must not trip over it.
    orphan = await EmbeddedPostgres(tmp_path / "postgres", durable=False).start()
    successor = EmbeddedPostgres(tmp_path / "postgres", durable=False)
    try:
        await successor.start()
        assert orphan.pid is not None and not pid_alive(orphan.pid)
        assert await postgres_reachable(successor.dsn)
    finally:
        successor.stop()
        orphan.stop()
