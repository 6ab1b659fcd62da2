"""Durability of the one-command platform: `linkrift dev` started as a user starts it (embedded
tansu with its default storage, chDB under the data dir, the machine's PostgreSQL and Redis),
stopped with SIGINT or crashed with SIGKILL of every process it runs, started again. Every store
(live counters and uniques, ClickHouse, PostgreSQL clicks and counters, QR/bio counts, the live
feed, the click webhooks) must continue exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from cli.procs import free_port, pid_alive
from engine.naming import RedisKeys
from tests.conftest import REDIS_URL
from tests.e2e.helpers import descendants
from tests.fakes.webhook_receiver import WebhookReceiver, serve_receiver

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
AGENTS = [f"Mozilla/5.0 (X11; Linux x86_64; durability {i}) Firefox/{120 + i}.0" for i in range(3)]


@dataclass
class Dev:
    """`linkrift dev` in its own session, as a user runs it in a terminal."""

    data_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    outputs: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, session: aiohttp.ClientSession, within: float = 90.0) -> None:
        log = (self.data_dir.parent / f"dev-{len(self.outputs)}.out").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dev", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.outputs.append(log.name)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            if "LinkRift is running" in self.output(-1):
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(f"{self.base}/healthz") as resp:
                        if resp.status == 200:
                            return
            await asyncio.sleep(0.2)
        raise AssertionError(f"linkrift dev not ready within {within}s:\n{self.output()}")

    def output(self, which: int | None = None) -> str:
        files = self.outputs if which is None else self.outputs[which:]
        return "\n".join(Path(f).read_text(errors="replace") for f in files)[-6000:]

    def processes(self) -> set[int]:
        assert self.proc is not None
        return {self.proc.pid, *descendants(self.proc.pid)}

    async def interrupt(self, within: float = 120.0) -> int:
        """Ctrl-C: SIGINT to the session's process group (dev's children run in groups of their own)."""
        assert self.proc is not None
        children = self.processes()
        os.killpg(self.proc.pid, signal.SIGINT)
        code = await asyncio.to_thread(self.proc.wait, within)
        left = sorted(p for p in children if pid_alive(p))
        assert left == [], f"processes left after the stop: {left}"
        return code

    def kill_everything(self) -> int:
        """SIGKILL to every process of the platform at once: dev, api, worker, the broker."""
        victims = self.processes()
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in victims) and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(victims)

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                for pid in self.processes():
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(10)


@contextlib.asynccontextmanager
async def dev_platform(tmp_path: Path, database_url: str, namespace: str) -> AsyncIterator[Dev]:
    env = dict(os.environ)
    for name in ("KAFKA_BROKER", "CLICKHOUSE_URL"):  # dev starts its own broker, embeds chDB
        env.pop(name, None)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        LINKRIFT_NAMESPACE=namespace,
        LINKRIFT_WORKER_PORT=str(free_port()),
        LINKRIFT_TOPIC_PARTITIONS="4",
        LINKRIFT_WEBHOOK_ALLOW_PRIVATE="true",
        PYTHONUNBUFFERED="1",
    )
    dev = Dev(tmp_path / "dev", free_port(), env)
    try:
        yield dev
    finally:
        dev.stop_quietly()


class Client:
    """The api as a user (and the user's visitors) reach it."""

    def __init__(self, session: aiohttp.ClientSession, dev: Dev) -> None:
        self.session = session
        self.dev = dev
        self.key = ""

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method, f"{self.dev.base}{path}", json=body, headers={"Authorization": f"Bearer {self.key}"}
        ) as resp:
            data = await resp.json(content_type=None)
            assert resp.status in (200, 201), (method, path, resp.status, data)
            return data

    async def visit(self, path: str, agent: str) -> int:
        """One visitor request; the status, 0 when no answer came (refused, reset, timed out)."""
        try:
            async with self.session.get(
                f"{self.dev.base}{path}",
                allow_redirects=False,
                headers={"User-Agent": agent},
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp:
                return resp.status
        except (aiohttp.ClientError, OSError, TimeoutError):
            return 0


@dataclass
class Targets:
    link: dict[str, Any]
    qr: dict[str, Any]
    page: dict[str, Any]
    button: dict[str, Any]
    workspace_id: str

    def paths(self) -> dict[str, str]:
        return {
            "link": f"/{self.link['short_code']}",
            "qr": "/" + self.qr["content"].split("/", 3)[3],
            "bio": f"/@{self.page['slug']}/l/{self.button['id']}",
        }


async def set_up(client: Client, hook_url: str | None) -> Targets:
    client.key = orjson.loads((client.dev.data_dir / "credentials.json").read_bytes())["api_key"]
    creds = orjson.loads((client.dev.data_dir / "credentials.json").read_bytes())
    link = await client.api("POST", "/api/v1/links", {"url": "https://example.com/landing"})
    qr = await client.api("POST", f"/api/v1/links/{link['id']}/qr-codes", {})
    page = await client.api(
        "POST",
        "/api/v1/bio-pages",
        {"slug": f"d{link['short_code'].lower()}", "title": "D", "is_published": True},
    )
    button = await client.api(
        "POST", f"/api/v1/bio-pages/{page['id']}/links", {"title": "B", "url": "https://example.com/b"}
    )
    if hook_url is not None:
        await client.api(
            "POST",
            "/api/v1/webhooks",
            {"url": hook_url, "events": ["link.clicked", "qr.scanned", "bio.clicked"]},
        )
    return Targets(link, qr, page, button, creds["workspace_id"])


async def click(client: Client, targets: Targets, plan: list[str]) -> Counter[str]:
    """Visit each kind in `plan` ("link", "qr", "bio"); returns the redirects answered, by kind."""
    paths = targets.paths()
    done: Counter[str] = Counter()
    for i, kind in enumerate(plan):
        status = await client.visit(paths[kind], AGENTS[i % len(AGENTS)])
        assert status == 302, (kind, status)
        done[kind] += 1
    return done


async def holdings(client: Client, targets: Targets, database_url: str, redis: Any) -> dict[str, Any]:
    """What every store holds for the test's link, QR code and bio button."""
    link_id, qr_id, button_id = targets.link["id"], targets.qr["id"], targets.button["id"]
    analytics = await client.api("GET", f"/api/v1/links/{link_id}/analytics")
    link = await client.api("GET", f"/api/v1/links/{link_id}")
    qr = await client.api("GET", f"/api/v1/links/{link_id}/qr-codes/{qr_id}")
    conn = await asyncpg.connect(database_url)
    try:
        pg = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE link_id = $1) AS link_rows,
                      count(*) FILTER (WHERE link_id = $2) AS bio_rows,
                      count(DISTINCT event_id) AS events, count(*) AS n FROM clicks""",
            link_id, button_id,
        )  # fmt: skip
        bio = await conn.fetchval("SELECT click_count FROM bio_page_links WHERE id = $1", button_id)
    finally:
        await conn.close()
    keys = RedisKeys(client.dev.env["LINKRIFT_NAMESPACE"])
    feed = [orjson.loads(f[b"data"]) for _, f in await redis.xrange(keys.click_feed(targets.workspace_id))]
    return {
        "live": (analytics["total_clicks"], analytics["unique_clicks"]),
        "clickhouse": analytics["clicks"],
        "pg_link": (link["total_clicks"], link["unique_clicks"]),
        "pg_clicks": (pg["link_rows"], pg["bio_rows"], pg["n"], pg["events"]),
        "qr_scans": qr["scan_count"],
        "bio_clicks": bio,
        "feed": (len(feed), len({c["event_id"] for c in feed})),
    }


def expected(link: int, qr: int, bio: int) -> dict[str, Any]:
    """What every store must hold after `link` plain redirects, `qr` scans and `bio` button
    clicks (the scans are clicks of the link too; one visitor per user agent)."""
    total = link + qr
    return {
        "live": (total, len(AGENTS)),
        "clickhouse": total,
        "pg_link": (total, len(AGENTS)),
        "pg_clicks": (total, bio, total + bio, total + bio),
        "qr_scans": qr,
        "bio_clicks": bio,
        "feed": (total + bio, total + bio),
    }


async def settle(
    read: Callable[[], Awaitable[dict[str, Any]]], want: dict[str, Any], within: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    held: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError, AssertionError):
            held = await read()
            if held == want:
                return held
        await asyncio.sleep(0.5)
    mismatch = {k: (held.get(k), v) for k, v in want.items() if held.get(k) != v}
    raise AssertionError(f"stores did not agree within {within}s; (held, expected): {mismatch}")


def webhook_items(receiver: WebhookReceiver) -> dict[str, list[str]]:
    """Click event ids delivered per webhook event type, each delivery counted once (a re-sent
    delivery keeps its webhook-id)."""
    seen: set[str] = set()
    items: dict[str, list[str]] = {}
    for headers, body in receiver.received:
        if headers["webhook-id"] in seen:
            continue
        seen.add(headers["webhook-id"])
        event = orjson.loads(body)
        listed = next(v for k, v in event["data"].items() if isinstance(v, list))
        items.setdefault(event["type"], []).extend(str(c["event_id"]) for c in listed)
    return items


async def test_sigint_and_start_again_continue_every_store(
    tmp_path: Path, database_url: str, namespace: str, redis_client: Any
) -> None:
    """The issue's scenario: clicks, Ctrl-C right after them, start again, more clicks: every
    count continues (no reset to the new clicks, no new clicks skipped as replays), the live feed
    holds each click once and each click webhook reports it once."""
    first = ["link"] * 24 + ["qr"] * 3 + ["bio"] * 3
    second = ["link"] * 16 + ["qr"] * 2 + ["bio"] * 2
    async with (
        dev_platform(tmp_path, database_url, namespace) as dev,
        serve_receiver() as receiver,
        aiohttp.ClientSession() as session,
    ):
        client = Client(session, dev)
        began = time.monotonic()
        await dev.start(session)
        startup = time.monotonic() - began
        banner = dev.output(-1)
        worker_port = dev.env["LINKRIFT_WORKER_PORT"]
        assert f":{worker_port}/metrics" in banner or "worker:" in banner, banner
        for name in ("postgres:", "redis:", "kafka:", "clickhouse:"):
            assert name in banner, banner
        targets = await set_up(client, receiver.url)
        await click(client, targets, first)
        assert await dev.interrupt() == 0, dev.output(-1)
        stop_log = dev.output(-1)

        await dev.start(session)
        await click(client, targets, second)
        want = expected(link=40, qr=5, bio=5)
        await settle(lambda: holdings(client, targets, database_url, redis_client), want)

        async def all_delivered() -> dict[str, Any]:
            items = webhook_items(receiver)
            return {k: len(v) for k, v in items.items()}

        try:
            await settle(all_delivered, {"link.clicked": 50, "qr.scanned": 5, "bio.clicked": 5})
        except AssertionError as exc:
            conn = await asyncpg.connect(database_url)
            try:
                rows = await conn.fetch(
                    "SELECT event_type, status, attempt, event_id FROM webhook_deliveries ORDER BY id"
                )
            finally:
                await conn.close()
            raise AssertionError(f"{exc}\ndeliveries: {[tuple(r) for r in rows]}") from None
        items = webhook_items(receiver)
        keys = RedisKeys(namespace)
        feed = {
            f[b"event_id"].decode()
            for _, f in await redis_client.xrange(keys.click_feed(targets.workspace_id))
        }
        assert sorted(items["link.clicked"]) == sorted(feed)  # every click once, none twice
        assert len(set(items["qr.scanned"])) == 5 and len(set(items["bio.clicked"])) == 5
        await asyncio.sleep(2)  # nothing more may arrive: a double count would show now
        assert await holdings(client, targets, database_url, redis_client) == want
        assert await dev.interrupt() == 0
    print(f"\nlinkrift dev ready in {startup:.1f}s; clean stop:\n" + "\n".join(
        line for line in stop_log.splitlines() if "stopped" in line
    ))  # fmt: skip


async def test_three_crashes_of_everything_during_traffic_count_every_redirect_once(
    tmp_path: Path, database_url: str, namespace: str, redis_client: Any
) -> None:
    """SIGKILL to dev, api, worker and the embedded broker at once while visitors keep coming,
    three times in a row: every request answered with a redirect is counted exactly once in every
    store; a request that got no answer (in flight at the kill) may or may not be."""
    async with dev_platform(tmp_path, database_url, namespace) as dev, aiohttp.ClientSession() as session:
        client = Client(session, dev)
        await dev.start(session)
        targets = await set_up(client, None)
        paths = targets.paths()
        answered: Counter[str] = Counter()
        unanswered: Counter[str] = Counter()  # no answer while the api was up: maybe journaled
        up = asyncio.Event()
        up.set()
        stop = asyncio.Event()

        async def visitors() -> None:
            kinds = ["link", "link", "qr", "bio"]
            i = 0
            while not stop.is_set():
                if not up.is_set():
                    await up.wait()
                    continue
                kind = kinds[i % len(kinds)]
                status = await client.visit(paths[kind], AGENTS[i % len(AGENTS)])
                if status == 302:
                    answered[kind] += 1
                elif up.is_set():
                    unanswered[kind] += 1
                i += 1
                await asyncio.sleep(0.005)

        traffic = asyncio.create_task(visitors())
        restarts: list[float] = []
        try:
            for _ in range(3):
                await asyncio.sleep(4)
                up.clear()
                killed = await asyncio.to_thread(dev.kill_everything)
                assert killed >= 4, killed  # dev, api, worker, broker
                began = time.monotonic()
                await dev.start(session)
                restarts.append(time.monotonic() - began)
                up.set()
            await asyncio.sleep(3)
        finally:
            stop.set()
            up.set()
            await traffic
        assert sum(answered.values()) > 100, answered

        async def read() -> dict[str, Any]:
            return await holdings(client, targets, database_url, redis_client)

        want = expected(link=answered["link"], qr=answered["qr"], bio=answered["bio"])
        if not unanswered:
            await settle(read, want, within=90)
        else:  # each unanswered request is counted once or not at all, in every store alike
            held = await settle_within_slack(read, answered, unanswered)
            want = expected(link=held[0], qr=held[1], bio=held[2])
        await asyncio.sleep(2)
        assert await read() == want
        assert await dev.interrupt() == 0
    print(f"\nrestarts after SIGKILL of everything: {', '.join(f'{r:.1f}s' for r in restarts)}; "
          f"answered {dict(answered)}, unanswered {dict(unanswered)}")  # fmt: skip


async def settle_within_slack(
    read: Callable[[], Awaitable[dict[str, Any]]], answered: Counter[str], unanswered: Counter[str]
) -> tuple[int, int, int]:
    """Wait until the stores agree on counts (link, qr, bio) between the answered requests and
    the answered plus unanswered ones; return them."""
    deadline = time.monotonic() + 90
    held: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError, AssertionError):
            held = await read()
            qr, bio = held["qr_scans"], held["bio_clicks"]
            link = held["clickhouse"] - qr
            if (
                answered["link"] <= link <= answered["link"] + unanswered["link"]
                and answered["qr"] <= qr <= answered["qr"] + unanswered["qr"]
                and answered["bio"] <= bio <= answered["bio"] + unanswered["bio"]
                and held == expected(link=link, qr=qr, bio=bio)
            ):
                return link, qr, bio
        await asyncio.sleep(0.5)
    raise AssertionError(f"stores: {held}; answered {answered}, unanswered {unanswered}")
