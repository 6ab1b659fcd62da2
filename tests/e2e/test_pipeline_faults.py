"""Fault test: SIGKILL the worker three times while 20k clicks flow; every store ends exact."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from cli.procs import free_port
from engine.clicks.models import RawClick
from engine.naming import CLICK_STREAM_MAXLEN
from tests.pipeline_fixtures import (
    GOOGLEBOT_UA,
    HUMAN_UA,
    PARTITIONS,
    Pipeline,
    WorkerProcess,
    assert_postgres_exact,
    commit_click_offsets,
    ground_truth,
    make_links,
    raw_click,
    settled,
    wait_until,
)

pytestmark = pytest.mark.e2e

CLICKS = 20_000
RATE = 500  # clicks/s offered by the producer
KILLS = 3
# Issue 4 targets < 10 s from restart to resumed processing; bench/pipeline.py measures it
# (7.0-7.1 s; this test printed 6.3-6.8 s). This bound only guards against gross regressions
# (e.g. waiting out Kafka's default 45 s session timeout: 90 s measured) on a loaded machine.
RESUME_LIMIT_SECONDS = 40.0


async def _total(p: Pipeline, links: list[dict[str, str]]) -> int:
    return sum([(await p.redis_counts(x["id"]))[0] for x in links])


async def test_three_sigkills_during_20k_clicks_leave_exact_counts(pipeline: Pipeline) -> None:
    p = pipeline
    # Four workspaces keep each live feed (capped at CLICK_STREAM_MAXLEN) holding all its clicks.
    links = await make_links(p.database_url, workspaces=4, links_per_workspace=2)
    rng = random.Random(11)
    clicks: list[RawClick] = []
    for i in range(CLICKS):
        ua = GOOGLEBOT_UA if rng.random() < 0.1 else HUMAN_UA
        clicks.append(
            raw_click(rng.choice(links), visitor=f"v{rng.randrange(500)}", ua=ua, ts=time.time() + i / 1e4)
        )
    # 200 re-sent copies (same event id) somewhere after their original.
    resent = [(rng.uniform(i + 0.5, CLICKS), clicks[i]) for i in rng.sample(range(CLICKS), 200)]
    stream = [
        c for _, c in sorted([*((float(i), c) for i, c in enumerate(clicks)), *resent], key=lambda t: t[0])
    ]
    truth = ground_truth(clicks)
    per_ws = truth.per_workspace

    async def produce() -> None:
        step = RATE // 10
        for start in range(0, len(stream), step):
            began = time.monotonic()
            await p.send(stream[start : start + step])
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - began)))

    started = time.monotonic()
    producer = asyncio.create_task(produce())
    resumes: list[float] = []
    try:
        for _ in range(KILLS):
            await asyncio.sleep(7)
            p.worker.kill()
            await asyncio.sleep(0.5)
            before = await _total(p, links)
            restarted = time.monotonic()
            await p.worker.start()

            async def advanced(before: int = before) -> bool:
                return await _total(p, links) > before

            assert await wait_until(advanced, within=90, interval=0.1), p.worker.log_tail()
            resumes.append(time.monotonic() - restarted)
        await producer
    finally:
        producer.cancel()
    produced = time.monotonic() - started

    async def done() -> bool:
        return await _total(p, links) >= CLICKS

    assert await wait_until(done, within=90), (await _total(p, links), p.worker.log_tail())
    drained = time.monotonic() - started
    # Redis is written before ClickHouse and PostgreSQL in each batch: wait for all of them.
    expected = {x["id"]: truth.per_link[x["id"]] for x in links}
    await settled(p, expected, workspaces=per_ws)
    await asyncio.sleep(2)  # nothing more may arrive: over-counting would show now
    print(
        f"\n{len(stream)} clicks ({len(resent)} re-sent) produced in {produced:.1f}s, counted after {drained:.1f}s "
        f"({CLICKS / drained:.0f} clicks/s end to end with {KILLS} SIGKILLs); "
        f"restart-to-resume seconds: {', '.join(f'{r:.1f}' for r in resumes)}"
    )
    for link in links:
        assert await p.redis_counts(link["id"]) == truth.per_link[link["id"]], link
        n = truth.per_link[link["id"]][0]
        assert await p.ch_count(link["id"]) == {"rows": n, "distinct_events": n}
    for ws, n in per_ws.items():
        assert await p.redis_workspace_total(ws) == n
        # The live feed (SSE, click webhooks) got every click exactly once through the kills.
        assert n < CLICK_STREAM_MAXLEN
        feed = await p.redis.xrange(p.keys.click_feed(ws))
        ids = [fields[b"event_id"].decode() for _, fields in feed]
        assert len(ids) == n and set(ids) == {c.event_id for c in clicks if c.workspace_id == ws}
    await assert_postgres_exact(p, truth, links)
    assert max(resumes) < RESUME_LIMIT_SECONDS, resumes


async def test_group_offset_ahead_of_the_tables_is_caught_up_from_the_topic(pipeline: Pipeline) -> None:
    """The defect the kill test once showed under Faust (the committed group offset ran past
    clicks whose effects never reached the tables), made deterministic: after the worker counted a
    first wave, the group's offsets are moved into the middle of a second wave sent while it is
    down. The worker must still count every click, because the tables, not the group offset, say
    where processing resumes."""
    p = pipeline
    links = await make_links(p.database_url, workspaces=1, links_per_workspace=6)
    rng = random.Random(5)
    clicks = [
        raw_click(rng.choice(links), visitor=f"v{rng.randrange(40)}", ua=HUMAN_UA, ts=time.time() + i / 1e4)
        for i in range(800)
    ]
    first, second = clicks[:200], clicks[200:]
    await p.send(first)

    async def counted(n: int) -> bool:
        return await _total(p, links) >= n

    assert await wait_until(lambda: counted(len(first)), within=60), p.worker.log_tail()
    await p.worker.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=p.bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(p.topics.clicks_raw, n) for n in range(PARTITIONS)]
        before = await consumer.end_offsets(tps)
        await p.send(second)
        after = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    skipped = {tp.partition: (before[tp] + after[tp]) // 2 for tp in tps if after[tp] - before[tp] >= 2}
    assert sum(skipped[tp.partition] - before[tp] for tp in tps if tp.partition in skipped) > 150
    await commit_click_offsets(p, skipped)
    await p.worker.start()
    truth = ground_truth(clicks)

    assert await wait_until(lambda: counted(len(clicks)), within=60), (
        await _total(p, links),
        p.worker.log_tail(),
    )
    await settled(p, {x["id"]: truth.per_link.get(x["id"], (0, 0)) for x in links})
    await asyncio.sleep(1)
    for link in links:
        assert await p.redis_counts(link["id"]) == truth.per_link.get(link["id"], (0, 0))
        n = truth.per_link.get(link["id"], (0, 0))[0]
        assert await p.ch_count(link["id"]) == {"rows": n, "distinct_events": n}
    assert "re-reading" in p.worker.log_tail(400)


async def _owned_partitions(worker: WorkerProcess) -> float | None:
    """The click-state partitions a worker holds (its `linkrift_click_state_partitions` gauge)."""
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{worker.url}/metrics") as resp:
            text = await resp.text()
    except (aiohttp.ClientError, OSError):
        return None
    for line in text.splitlines():
        if line.startswith("linkrift_click_state_partitions "):
            return float(line.split()[1])
    return None


async def test_two_workers_hand_partitions_over_and_back(pipeline: Pipeline, tmp_path: Path) -> None:
    """Two workers share clicks.raw; one is SIGKILLed during traffic (the other takes its
    partitions, recovering their state from the changelog) and started again (the group gives
    them back). Redis, PostgreSQL and the link counters end exact. (Each worker has its own
    embedded chDB directory, which one process owns, so ClickHouse is checked by the other tests.)"""
    p = pipeline
    second_env = dict(p.worker.env)
    second_port = free_port()
    second_env.update(
        LINKRIFT_WORKER_PORT=str(second_port),
        LINKRIFT_DATA_DIR=str(tmp_path / "data-b"),
        CLICKHOUSE_URL=f"chdb://{tmp_path / 'clickhouse-b'}",
    )
    second = WorkerProcess(second_env, tmp_path / "logs-b", second_port)
    await second.start()
    try:

        async def split() -> bool:
            return (
                await _owned_partitions(p.worker) == PARTITIONS / 2
                and await _owned_partitions(second) == PARTITIONS / 2
            )

        assert await wait_until(split, within=30), (p.worker.log_tail(), second.log_tail())
        links = await make_links(p.database_url, workspaces=2, links_per_workspace=4)
        rng = random.Random(21)
        clicks = [
            raw_click(
                rng.choice(links), visitor=f"v{rng.randrange(300)}", ua=HUMAN_UA, ts=time.time() + i / 1e4
            )
            for i in range(6000)
        ]
        truth = ground_truth(clicks)

        async def produce() -> None:
            for start in range(0, len(clicks), 50):  # ~500 clicks/s
                await p.send(clicks[start : start + 50])
                await asyncio.sleep(0.1)

        async def took_over() -> bool:
            return await _owned_partitions(p.worker) == PARTITIONS

        producer = asyncio.create_task(produce())
        try:
            await asyncio.sleep(3)
            second.kill()
            assert await wait_until(took_over, within=30), p.worker.log_tail()
            await second.start()
            assert await wait_until(split, within=30), (p.worker.log_tail(), second.log_tail())
            await producer
        finally:
            producer.cancel()

        async def done() -> bool:
            return await _total(p, links) >= len(clicks)

        assert await wait_until(done, within=90), (
            await _total(p, links),
            p.worker.log_tail(),
            second.log_tail(),
        )
        await asyncio.sleep(2)  # a double count would show now
        for link in links:
            assert await p.redis_counts(link["id"]) == truth.per_link.get(link["id"], (0, 0)), link
        for ws, n in truth.per_workspace.items():
            assert await p.redis_workspace_total(ws) == n

        async def pg_done() -> bool:
            rows = await p.pg("SELECT count(*) AS n FROM clicks")
            return rows[0]["n"] >= len(clicks)

        assert await wait_until(pg_done, within=30)
        await assert_postgres_exact(p, truth, links)
    finally:
        await second.stop()
