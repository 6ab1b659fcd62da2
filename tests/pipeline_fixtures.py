"""Test harness for the click pipeline: `linkrift worker` as a real subprocess, a click producer
and ground-truth readers (ClickHouse through the worker's internal endpoint, Redis, PostgreSQL);
`settled` waits until all of them hold the expected counts (Redis is written first in a batch).

Import the fixtures into a test module with `from tests.pipeline_fixtures import *  # noqa: F403`
or by name (`worker`, `pipeline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, InconsistentGroupProtocolError

from cli.procs import ManagedProcess, free_port, port_open
from cli.services import ensure_topics
from engine.clicks.models import RawClick
from engine.naming import RedisKeys, Topics
from streams.web import INTERNAL_TOKEN_HEADER
from tests.conftest import REDIS_URL

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 4


class WorkerProcess:
    """`linkrift worker` in its own process group; killed and restarted by PID."""

    def __init__(self, env: dict[str, str], log_dir: Path, port: int) -> None:
        self.env = env
        self.port = port
        self.log_dir = log_dir
        self.proc: ManagedProcess | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self, ready_within: float = 60.0) -> None:
        self.starts += 1
        self.proc = ManagedProcess(
            f"worker{self.starts}",
            [sys.executable, "-m", "cli.main", "worker"],
            log_dir=self.log_dir,
            env=self.env,
            cwd=REPO,
        ).start()
        deadline = time.monotonic() + ready_within
        while not await asyncio.to_thread(port_open, "127.0.0.1", self.port):
            if not self.proc.alive:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.proc.log_tail(60)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker web port not open after {ready_within}s:\n{self.proc.log_tail(60)}"
                )
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, no clean shutdown: the fault the pipeline must survive."""
        if self.proc is not None:
            self.proc.kill()

    async def stop(self) -> None:
        if self.proc is not None:
            await asyncio.to_thread(self.proc.stop, 20.0)

    def log_tail(self, lines: int = 60) -> str:
        return self.proc.log_tail(lines) if self.proc else ""


@dataclass
class Pipeline:
    """Everything a pipeline test needs: the worker, a producer and the three stores."""

    worker: WorkerProcess
    producer: AIOKafkaProducer
    redis: Any
    database_url: str
    namespace: str
    token: str
    bootstrap: str
    topics: Topics = field(init=False)
    keys: RedisKeys = field(init=False)

    def __post_init__(self) -> None:
        self.topics = Topics(self.namespace)
        self.keys = RedisKeys(self.namespace)

    async def send(self, clicks: Iterable[RawClick]) -> int:
        """Produce clicks to clicks.raw keyed by link id (acks=all); return how many."""
        futures = [
            await self.producer.send(self.topics.clicks_raw, c.dumps(), key=c.link_id.encode())
            for c in clicks
        ]
        await asyncio.gather(*futures)
        return len(futures)

    async def analytics(self, query: str, **params: Any) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.worker.url}/internal/analytics",
                json={"query": query, "params": params},
                headers={INTERNAL_TOKEN_HEADER: self.token},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp,
        ):
            body: dict[str, Any] = await resp.json(content_type=None)
            if resp.status != 200:
                raise AssertionError(f"analytics {query} -> {resp.status} {body}")
            return body

    async def ch_count(self, link_id: str) -> dict[str, int]:
        return await self.analytics("link_click_count", link_id=link_id)

    async def redis_counts(self, link_id: str) -> tuple[int, int]:
        total, unique = await self.redis.mget(
            self.keys.realtime_link(link_id), self.keys.realtime_unique(link_id)
        )
        return int(total or 0), int(unique or 0)

    async def redis_workspace_total(self, workspace_id: str) -> int:
        parts = await self.redis.hgetall(self.keys.realtime_workspace(workspace_id))
        return sum(int(v) for v in parts.values())

    async def pg(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()


async def wait_until(predicate: Callable[[], Awaitable[Any]], within: float, interval: float = 0.25) -> Any:
    """Poll an async predicate until it is truthy; return its last value (falsy on timeout)."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await predicate()
        except (TimeoutError, aiohttp.ClientError, OSError):
            last = None
        if last:
            return last
        await asyncio.sleep(interval)
    return last


async def store_counts(p: Pipeline, link_ids: Iterable[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """Per link, what each store holds: Redis (total, unique), ClickHouse (rows, distinct event
    ids), PostgreSQL `links` (total_clicks, unique_clicks) and `clicks` (rows, distinct event ids).
    A link without a `links` row (a bio button's clicks) reads (0, 0) there."""
    ids = list(link_ids)
    counters = await p.pg(
        "SELECT id::text, total_clicks, unique_clicks FROM links WHERE id = ANY($1::uuid[])", ids
    )
    rows = await p.pg(
        """SELECT link_id::text, count(*) AS n, count(DISTINCT event_id) AS e FROM clicks
           WHERE link_id = ANY($1::uuid[]) GROUP BY link_id""",
        ids,
    )
    pg_links = {r["id"]: (r["total_clicks"], r["unique_clicks"]) for r in counters}
    pg_clicks = {r["link_id"]: (r["n"], r["e"]) for r in rows}
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for link_id in ids:
        ch = await p.ch_count(link_id)
        out[link_id] = {
            "redis": await p.redis_counts(link_id),
            "clickhouse": (ch["rows"], ch["distinct_events"]),
            "pg_links": pg_links.get(link_id, (0, 0)),
            "pg_clicks": pg_clicks.get(link_id, (0, 0)),
        }
    return out


async def source_counts(p: Pipeline) -> dict[str, int]:
    """qr_codes.scan_count and bio_page_links.click_count by id."""
    rows = await p.pg(
        """SELECT id::text, scan_count AS n FROM qr_codes
           UNION ALL SELECT id::text, click_count FROM bio_page_links"""
    )
    return {r["id"]: r["n"] for r in rows}


async def settled(
    p: Pipeline,
    links: Mapping[str, tuple[int, int | None]],
    *,
    workspaces: Mapping[str, int] | None = None,
    sources: Mapping[str, int] | None = None,
    within: float = 60.0,
) -> None:
    """Wait until every store holds exactly the expected counts; raise AssertionError naming what
    each store holds if they do not within `within` seconds.

    `links` maps a link id to its (total, unique) clicks; unique None is not checked, and the
    PostgreSQL `links` row is checked only for ids that have one. Redis is written first in each
    batch, ClickHouse and PostgreSQL after it, so a test that saw the Redis counters must still
    wait for the others. `workspaces`: Redis live totals; `sources`: QR scan / bio click counts."""
    with_row = await p.pg("SELECT id::text FROM links WHERE id = ANY($1::uuid[])", list(links))
    has_row = {r["id"] for r in with_row}
    target: dict[str, Any] = {}
    for link_id, (total, unique) in links.items():
        target[link_id] = {
            "redis": (total, unique),
            "clickhouse": (total, total),
            "pg_clicks": (total, total),
        }
        if link_id in has_row:
            target[link_id]["pg_links"] = (total, unique)
    if workspaces is not None:
        target["workspaces"] = dict(workspaces)
    if sources is not None:
        target["sources"] = dict(sources)
    last: dict[str, Any] = {}

    async def agree() -> bool:
        nonlocal last
        last = {}
        for link_id, stores in (await store_counts(p, links)).items():
            want = target[link_id]  # unique counts not asked for are not compared
            last[link_id] = {s: (stores[s][0], None if want[s][1] is None else stores[s][1]) for s in want}
        if workspaces is not None:
            last["workspaces"] = {ws: await p.redis_workspace_total(ws) for ws in workspaces}
        if sources is not None:
            last["sources"] = {k: v for k, v in (await source_counts(p)).items() if k in sources}
        return last == target

    if not await wait_until(agree, within=within):
        mismatched = {k: (last.get(k), target[k]) for k in target if last.get(k) != target[k]}
        raise AssertionError(
            f"stores did not agree within {within:g}s; (held, expected): {mismatched}\n{p.worker.log_tail(20)}"
        )


def worker_env(
    *, database_url: str, broker_url: str, namespace: str, tmp: Path, port: int, token: str
) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("LINKRIFT_")}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        KAFKA_BROKER=broker_url,
        CLICKHOUSE_URL=f"chdb://{tmp / 'clickhouse'}",
        LINKRIFT_NAMESPACE=namespace,
        LINKRIFT_DATA_DIR=str(tmp / "data"),
        LINKRIFT_WORKER_PORT=str(port),
        LINKRIFT_INTERNAL_TOKEN=token,
        LINKRIFT_TOPIC_PARTITIONS=str(PARTITIONS),
        LINKRIFT_ENV="test",
        LINKRIFT_SECRET_KEY="test-secret-" + namespace,
        LINKRIFT_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.asynccontextmanager
async def running_pipeline(
    tmp_path: Path,
    database_url: str,
    bootstrap: str,
    namespace: str,
    redis_client: Any,
    extra_env: Mapping[str, str] | None = None,
) -> AsyncIterator[Pipeline]:
    """A started `linkrift worker` on the broker at `bootstrap`, with a producer and the stores'
    readers; the worker and producer are stopped on exit."""
    topics = Topics(namespace)
    await ensure_topics(bootstrap, {topics.clicks_raw: PARTITIONS, topics.links_changes: PARTITIONS})
    token = f"internal-{uuid.uuid4().hex}"
    port = free_port()
    env = worker_env(
        database_url=database_url,
        broker_url=f"kafka://{bootstrap}",
        namespace=namespace,
        tmp=tmp_path,
        port=port,
        token=token,
    )
    env.update(extra_env or {})
    worker = WorkerProcess(env, tmp_path / "logs", port)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        await worker.start()
        yield Pipeline(worker, producer, redis_client, database_url, namespace, token, bootstrap)
    finally:
        await producer.stop()
        await worker.stop()


@pytest_asyncio.fixture
async def pipeline(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    broker: Any,
    namespace: str,
    redis_client: Any,
) -> AsyncIterator[Pipeline]:
    """A running worker for this test's database and namespace, plus a producer to feed it.

    A test module may set `WORKER_ENV = {"LINKRIFT_…": "…"}` to add settings to the worker's
    environment (e.g. short webhook retries)."""
    extra = getattr(request.module, "WORKER_ENV", {})
    async with running_pipeline(
        tmp_path, database_url, broker.bootstrap, namespace, redis_client, extra
    ) as p:
        yield p


async def make_links(
    database_url: str, workspaces: int, links_per_workspace: int, **columns: Any
) -> list[dict[str, str]]:
    """Users, workspaces and links straight in PostgreSQL; returns [{id, workspace_id, short_code}]."""
    from engine.accounts.repository import create_user, create_workspace

    conn = await asyncpg.connect(database_url)
    out: list[dict[str, str]] = []
    try:
        for w in range(workspaces):
            user_id = await create_user(
                conn, f"{uuid.uuid4().hex[:8]}@example.test", "!unusable", f"User {w}"
            )
            workspace_id = await create_workspace(conn, user_id, f"Workspace {w}")
            for i in range(links_per_workspace):
                code = f"c{uuid.uuid4().hex[:8]}"
                names = ", ".join(columns)
                extra = ", ".join(f"${n + 5}" for n in range(len(columns)))
                row = await conn.fetchrow(
                    f"""INSERT INTO links (user_id, workspace_id, url, short_code{", " + names if names else ""})
                        VALUES ($1, $2, $3, $4{", " + extra if extra else ""}) RETURNING id""",
                    user_id,
                    workspace_id,
                    f"https://example.com/{w}/{i}",
                    code,
                    *columns.values(),
                )
                assert row is not None
                out.append({"id": str(row["id"]), "workspace_id": str(workspace_id), "short_code": code})
    finally:
        await conn.close()
    return out


def raw_click(
    link: dict[str, str],
    *,
    visitor: str,
    ua: str,
    method: str = "GET",
    ts: float | None = None,
    event_id: str | None = None,
    rule_id: str = "",
    variant: str = "",
    ip: str = "",
) -> RawClick:
    return RawClick(
        event_id=event_id or uuid.uuid4().hex,
        ts=ts if ts is not None else time.time(),
        link_id=link["id"],
        workspace_id=link["workspace_id"],
        domain="",
        short_code=link["short_code"],
        destination="https://example.com/",
        rule_id=rule_id,
        variant=variant,
        method=method,
        ip=ip,
        user_agent=ua,
        visitor_id=visitor,
    )


HUMAN_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
GOOGLEBOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SLACKBOT_UA = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"


async def commit_click_offsets(p: Pipeline, offsets: Mapping[int, int]) -> None:
    """Commit `offsets` ({partition: offset} of clicks.raw) for the worker's click consumer group
    while the worker is stopped, as a member of the group (tansu refuses commits from outside a
    group that has had members)."""

    async def committed() -> bool:
        consumer = AIOKafkaConsumer(
            p.topics.clicks_raw,
            bootstrap_servers=p.bootstrap,
            group_id=f"{p.namespace}-clicks",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        try:
            await consumer.start()
            await consumer.getmany(timeout_ms=500)
            tps = consumer.assignment()
            if len(tps) < PARTITIONS:
                return False  # the stopped worker's member has not left yet
            wanted = {TopicPartition(p.topics.clicks_raw, n): o for n, o in offsets.items()}
            await consumer.commit(wanted)
            return all([await consumer.committed(tp) == o for tp, o in wanted.items()])
        except (InconsistentGroupProtocolError, CommitFailedError):
            return False
        finally:
            await consumer.stop()

    assert await wait_until(committed, within=45, interval=0.5)


@dataclass
class GroundTruth:
    """What a list of clicks must count to: per link (total, unique visitors), per workspace."""

    per_link: dict[str, tuple[int, int]]
    per_workspace: Counter[str]
    clicks: int


def ground_truth(clicks: Iterable[RawClick]) -> GroundTruth:
    totals: Counter[str] = Counter()
    visitors: dict[str, set[str]] = {}
    workspaces: Counter[str] = Counter()
    n = 0
    for click in clicks:
        n += 1
        totals[click.link_id] += 1
        visitors.setdefault(click.link_id, set()).add(click.visitor_id)
        workspaces[click.workspace_id] += 1
    return GroundTruth({k: (totals[k], len(visitors[k])) for k in totals}, workspaces, n)


async def assert_postgres_exact(p: Pipeline, truth: GroundTruth, links: Iterable[Mapping[str, str]]) -> None:
    """Every click once in `clicks`, and the links' counters equal to the truth."""
    rows = await p.pg("SELECT count(*) AS n, count(DISTINCT event_id) AS e FROM clicks")
    assert (rows[0]["n"], rows[0]["e"]) == (truth.clicks, truth.clicks)
    counters = await p.pg("SELECT id::text, total_clicks, unique_clicks FROM links")
    assert {r["id"]: (r["total_clicks"], r["unique_clicks"]) for r in counters} == {
        x["id"]: truth.per_link.get(x["id"], (0, 0)) for x in links
    }
