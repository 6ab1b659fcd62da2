"""cli.services and cli.procs against real processes: tansu, embedded PostgreSQL and Redis, process groups."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cli import services
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


@pytest.fixture(autouse=True)
def pg_shared_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway stand-in for /var/lib/linkrift: pytest's tmp_path lies under a 0700 directory, so
    as root every embedded cluster here is kept in the shared root."""
    root = Path(tempfile.mkdtemp(prefix="lr-pg-shared-"))
    root.chmod(0o755)
    monkeypatch.setattr(services, "PG_SHARED_ROOT", root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


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


_ORPHAN_PARENT = """
import asyncio, sys
from pathlib import Path
from cli.procs import ManagedProcess
from cli.services import EmbeddedPostgres

tmp, shared = Path(sys.argv[1]), Path(sys.argv[2])
sleeper = ManagedProcess("sleeper", ["sleep", "300"], log_dir=tmp).start()
pg = asyncio.run(EmbeddedPostgres(tmp / "postgres", durable=False, shared_root=shared).start())
print(sleeper.pid, pg.pid, flush=True)
sys.stdin.read()  # until killed
"""


def test_children_die_with_a_sigkilled_parent(tmp_path: Path, pg_shared_root: Path) -> None:
    # A parent killed outright runs no atexit or signal handler: only the kernel's parent-death
    # signal stops its children (including postgres, which runs as another user when we are root).
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_PARENT, str(tmp_path), str(pg_shared_root)],
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    children: list[int] = []
    try:
        assert parent.stdout is not None
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(children) == 2 and all(pid_alive(pid) for pid in children)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while any(pid_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in children if pid_alive(pid)] == []
    finally:
        parent.kill()
        parent.wait()
        for pid in children:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


_PRIVATE_CHECKOUT = """
import asyncio, sys
from pathlib import Path
import asyncpg
import pgserver  # the copy in the private "venv" first on sys.path
from cli.services import EmbeddedPostgres

assert Path(pgserver.__file__).is_relative_to(sys.argv[1]), pgserver.__file__

async def main() -> None:
    pg = await EmbeddedPostgres(Path(sys.argv[2]), durable=False, shared_root=Path(sys.argv[3])).start()
    try:
        conn = await asyncpg.connect(pg.dsn)
        print(await conn.fetchval("SELECT current_setting('data_directory')"), flush=True)
        await conn.close()
    finally:
        pg.stop()

asyncio.run(main())
"""


def test_embedded_postgres_from_directories_other_users_cannot_traverse(
    tmp_path: Path, pg_shared_root: Path
) -> None:
    # A clone in a `mktemp -d` folder (or under /root): its venv and its data dir sit under 0700
    # directories the `linkrift` user, which runs postgres when we are root, cannot traverse.
    venv, data = tmp_path / "clone" / "site-packages", tmp_path / "home" / ".linkrift" / "postgres"
    installed = Path(importlib.util.find_spec("pgserver").origin or "").parent
    shutil.copytree(installed, venv / "pgserver", symlinks=True)
    shutil.copytree(installed.parent / "pgserver.libs", venv / "pgserver.libs", symlinks=True)
    data.mkdir(parents=True)
    for private in (tmp_path / "clone", tmp_path / "home"):
        private.chmod(0o700)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(venv), str(Path(__file__).resolve().parents[2])])}
    result = subprocess.run(
        [sys.executable, "-c", _PRIVATE_CHECKOUT, str(venv), str(data), str(pg_shared_root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()  # postgres answered with its data directory
    # Nothing was loosened: both directories are still private to their owner.
    for private in (tmp_path / "clone", tmp_path / "home"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
