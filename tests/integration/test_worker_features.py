"""Worker features beyond counting: re-sent click ids dropped (also after a restart), the observed
A/B split, `exhausted`/`expired` events through the outbox exactly once, past-retention click
partitions dropped, and the worker's metrics."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.pipeline_fixtures import (
    GOOGLEBOT_UA,
    HUMAN_UA,
    Pipeline,
    make_links,
    raw_click,
    settled,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_resent_clicks_are_dropped_across_restart_and_ab_split_published(pipeline: Pipeline) -> None:
    p = pipeline
    (link,) = await make_links(p.database_url, 1, 1)
    originals = [
        raw_click(link, visitor=f"v{i % 7}", ua=HUMAN_UA, rule_id="r1", variant="a" if i % 3 else "b")
        for i in range(30)
    ]
    await p.send(originals)
    await settled(p, {link["id"]: (30, 7)})
    assert {
        k.decode(): int(v) for k, v in (await p.redis.hgetall(p.keys.ab_observed(link["id"]))).items()
    } == {"r1:a": 20, "r1:b": 10}

    await p.send(originals[:10])  # the api re-sends after an ambiguous produce failure
    await p.send([raw_click(link, visitor="new1", ua=HUMAN_UA)])
    await settled(p, {link["id"]: (31, 8)})

    await p.pg(
        "CREATE TABLE clicks_2001_01 PARTITION OF clicks FOR VALUES FROM ('2001-01-01') TO ('2001-02-01')"
    )
    await p.worker.stop()  # the remembered ids survive a restart (changelog-backed table)
    await p.worker.start()

    async def old_partition_dropped() -> bool:  # maintenance runs on start: past retention
        return not await p.pg("SELECT 1 FROM pg_class WHERE relname = 'clicks_2001_01'")

    assert await wait_until(old_partition_dropped, within=20)
    await p.send(originals[10:20])
    await p.send([raw_click(link, visitor="new2", ua=GOOGLEBOT_UA)])
    await settled(p, {link["id"]: (32, 9)})
    assert await p.ch_count(link["id"]) == {"rows": 32, "distinct_events": 32}
    rows = await p.pg("SELECT count(*) AS n, count(DISTINCT event_id) AS e FROM clicks")
    assert (rows[0]["n"], rows[0]["e"]) == (32, 32)

    lag_zero = r'linkrift_consumer_lag\{partition="\d+",topic="[^"]+clicks.raw"\} 0'
    metrics = ""
    # The lag gauge is refreshed every 2 s: wait for the first refresh after the restart.
    for _ in range(50):
        async with aiohttp.ClientSession() as http, http.get(f"{p.worker.url}/metrics") as resp:
            metrics = await resp.text()
        if re.search(lag_zero, metrics):
            break
        await asyncio.sleep(0.2)
    assert re.search(r'linkrift_agent_events_total\{agent="clicks"\} [1-9]', metrics)
    assert re.search(r"linkrift_click_dedup_entries [1-9]", metrics)
    assert re.search(r"linkrift_clicks_duplicate_dropped_total [1-9]", metrics)
    assert re.search(lag_zero, metrics)


async def test_exhausted_and_expired_events_once_(pipeline: Pipeline) -> None:
    p = pipeline
    capped, other = await make_links(p.database_url, 1, 2, max_clicks=5)
    soon = datetime.now(UTC) + timedelta(seconds=2)
    (expiring,) = await make_links(p.database_url, 1, 1, expires_at=soon)
    (past,) = await make_links(p.database_url, 1, 1, expires_at=datetime.now(UTC) - timedelta(days=1))

    await p.send([raw_click(capped, visitor=f"v{i}", ua=HUMAN_UA) for i in range(4)])
    await settled(p, {capped["id"]: (4, 4)})
    assert await p.pg("SELECT 1 FROM outbox WHERE payload->>'event' = 'exhausted'") == []
    # The 5th click reaches max_clicks; more (e.g. replays, in-flight clicks) emit nothing new.
    await p.send([raw_click(capped, visitor=f"w{i}", ua=HUMAN_UA) for i in range(3)])
    await p.send([raw_click(other, visitor=f"w{i}", ua=HUMAN_UA) for i in range(5)])
    await settled(p, {other["id"]: (5, 5)})

    async def events() -> list[tuple[str, str]]:
        rows = await p.pg(
            "SELECT payload->>'event' AS e, key FROM outbox WHERE payload->>'event' IN ('exhausted', 'expired') "
            "AND published_at IS NOT NULL ORDER BY id"
        )
        return [(r["e"], r["key"]) for r in rows]

    expected = {
        ("exhausted", capped["id"]),
        ("exhausted", other["id"]),
        ("expired", expiring["id"]),
        ("expired", past["id"]),
    }

    async def all_events() -> bool:
        return set(await events()) == expected

    assert await wait_until(all_events, within=15), await events()
    got = await events()
    assert len(got) == len(expected)  # each exactly once
    flags = await p.pg(
        "SELECT id::text, is_active, exhausted_at IS NOT NULL AS ex FROM links WHERE max_clicks = 5"
    )
    assert {(r["id"], r["is_active"], r["ex"]) for r in flags} == {
        (capped["id"], True, True),
        (other["id"], True, True),
    }

    # Moving expires_at re-arms the expiry event; the link cache entry is invalidated by the
    # link-change agent once the event is relayed.
    await p.redis.set(p.keys.link(past["short_code"]), b"cached")
    await p.pg("UPDATE links SET expires_at = now() - interval '1 hour' WHERE id = $1", past["id"])

    async def re_expired() -> bool:
        return [k for e, k in await events() if k == past["id"]] == [past["id"], past["id"]] and not (
            await p.redis.exists(p.keys.link(past["short_code"]))
        )

    assert await wait_until(re_expired, within=15), await events()
