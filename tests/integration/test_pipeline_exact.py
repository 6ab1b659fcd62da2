"""The worker counts every click exactly once in every store: the click state (mirrored to Redis),
ClickHouse and PostgreSQL, for a mixed stream of humans, bots, previews and repeat visitors."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from engine.clicks.models import RawClick
from tests.pipeline_fixtures import (
    GOOGLEBOT_UA,
    HUMAN_UA,
    SLACKBOT_UA,
    Pipeline,
    make_links,
    raw_click,
    settled,
    wait_until,
)

pytestmark = pytest.mark.integration


def mixed_clicks(links: list[dict[str, str]], n: int, seed: int = 7) -> list[RawClick]:
    rng = random.Random(seed)
    now = time.time()
    clicks = []
    for i in range(n):
        link = rng.choice(links)
        kind = rng.random()
        visitor = f"v{rng.randrange(60)}"  # few visitors: many repeats
        if kind < 0.6:
            click = raw_click(link, visitor=visitor, ua=HUMAN_UA, ts=now + i * 0.001)
        elif kind < 0.75:
            click = raw_click(link, visitor=f"bot{rng.randrange(5)}", ua=GOOGLEBOT_UA, ts=now + i * 0.001)
        elif kind < 0.9:
            click = raw_click(link, visitor=visitor, ua=HUMAN_UA, method="HEAD", ts=now + i * 0.001)
        else:
            click = raw_click(link, visitor=f"slack{rng.randrange(3)}", ua=SLACKBOT_UA, ts=now + i * 0.001)
        clicks.append(click)
    return clicks


def ground_truth(clicks: list[RawClick]) -> dict[str, Any]:
    total: Counter[str] = Counter()
    visitors: dict[str, set[str]] = defaultdict(set)
    workspaces: Counter[str] = Counter()
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for c in clicks:
        total[c.link_id] += 1
        visitors[c.link_id].add(c.visitor_id)
        workspaces[c.workspace_id] += 1
        kind = (
            "preview"
            if c.method == "HEAD" or "Slackbot" in c.user_agent
            else ("bot" if "Googlebot" in c.user_agent else "human")
        )
        kinds[c.link_id][kind] += 1
    return {
        "total": total,
        "unique": {k: len(v) for k, v in visitors.items()},
        "workspaces": workspaces,
        "kinds": kinds,
    }


async def test_two_thousand_mixed_clicks_agree_exactly_everywhere(pipeline: Pipeline) -> None:
    links = await make_links(pipeline.database_url, workspaces=2, links_per_workspace=3)
    clicks = mixed_clicks(links, 2000)
    truth = ground_truth(clicks)
    started = time.monotonic()
    await pipeline.send(clicks)

    async def redis_done() -> bool:
        return [await pipeline.redis_counts(x["id"]) for x in links] == [
            (truth["total"][x["id"]], truth["unique"][x["id"]]) for x in links
        ]

    assert await wait_until(redis_done, within=60), [await pipeline.redis_counts(x["id"]) for x in links]
    elapsed = time.monotonic() - started
    print(f"\n2000 clicks counted in Redis after {elapsed:.2f}s ({2000 / elapsed:.0f} clicks/s)")
    # Redis is written before ClickHouse and PostgreSQL in each batch: wait for all of them.
    expected = {x["id"]: (truth["total"][x["id"]], truth["unique"][x["id"]]) for x in links}
    await settled(pipeline, expected, workspaces=truth["workspaces"])

    for ws, n in truth["workspaces"].items():
        assert await pipeline.redis_workspace_total(ws) == n
    for link in links:
        counts = await pipeline.ch_count(link["id"])
        assert counts == {"rows": truth["total"][link["id"]], "distinct_events": truth["total"][link["id"]]}

    counters = await pipeline.pg("SELECT id::text, total_clicks, unique_clicks FROM links")
    assert {r["id"]: (r["total_clicks"], r["unique_clicks"]) for r in counters} == {
        link["id"]: (truth["total"][link["id"]], truth["unique"][link["id"]]) for link in links
    }
    rows = await pipeline.pg(
        """SELECT link_id::text, count(*) AS n, count(DISTINCT event_id) AS events,
                  count(DISTINCT visitor_id) AS visitors,
                  count(*) FILTER (WHERE is_bot) AS bots, count(*) FILTER (WHERE is_preview) AS previews,
                  count(*) FILTER (WHERE ip_address IS NULL) AS no_ip
           FROM clicks GROUP BY link_id"""
    )
    by_link = {r["link_id"]: r for r in rows}
    for link in links:
        r = by_link[link["id"]]
        kinds = truth["kinds"][link["id"]]
        assert (r["n"], r["events"], r["visitors"]) == (
            truth["total"][link["id"]],
            truth["total"][link["id"]],
            truth["unique"][link["id"]],
        )
        assert (r["bots"], r["previews"]) == (kinds["bot"], kinds["preview"])
        assert r["no_ip"] == r["n"]  # the clicks carried no ip: stored as NULL, not ''


async def test_poison_records_are_skipped_and_the_rest_counted(pipeline: Pipeline) -> None:
    """Undecodable or invalid records on clicks.raw (not JSON, a JSON list, ids that are not
    UUIDs, a text timestamp) are dropped one by one; they never fail the batch around them."""
    links = await make_links(pipeline.database_url, workspaces=1, links_per_workspace=2)
    good = mixed_clicks(links, 200, seed=3)
    truth = ground_truth(good)
    bad_link = raw_click(links[0], visitor="x", ua=HUMAN_UA)
    poison = [
        b"\xff not json",
        b"[1, 2, 3]",
        bad_link.dumps().replace(links[0]["id"].encode(), b"not-a-uuid"),
        bad_link.dumps().replace(links[0]["workspace_id"].encode(), b"ws-1"),
        bad_link.dumps().replace(b'"ts":', b'"ts":"yesterday","x":'),
    ]
    key = links[0]["id"].encode()
    for i, click in enumerate(good):
        await pipeline.producer.send(pipeline.topics.clicks_raw, click.dumps(), key=click.link_id.encode())
        if i % 50 == 10:
            for record in poison:
                await pipeline.producer.send(pipeline.topics.clicks_raw, record, key=key)
    await pipeline.producer.flush()

    async def counted() -> bool:
        return [await pipeline.redis_counts(x["id"]) for x in links] == [
            (truth["total"][x["id"]], truth["unique"][x["id"]]) for x in links
        ]

    assert await wait_until(counted, within=60), pipeline.worker.log_tail()
    await settled(pipeline, {x["id"]: (truth["total"][x["id"]], truth["unique"][x["id"]]) for x in links})
    for link in links:
        n = truth["total"][link["id"]]
        assert await pipeline.ch_count(link["id"]) == {"rows": n, "distinct_events": n}
    assert "dropping malformed click" in pipeline.worker.log_tail(400)


async def test_a_failing_postgres_write_holds_the_batch_until_it_succeeds(pipeline: Pipeline) -> None:
    """While PostgreSQL refuses the clicks insert (the table is renamed away), the worker keeps
    retrying that batch instead of acknowledging it: once the table is back every store is exact."""
    links = await make_links(pipeline.database_url, workspaces=1, links_per_workspace=2)
    first = mixed_clicks(links, 100, seed=21)
    await pipeline.send(first)
    truth = ground_truth(first)
    await settled(pipeline, {x["id"]: (truth["total"][x["id"]], truth["unique"][x["id"]]) for x in links})

    await pipeline.pg("ALTER TABLE clicks RENAME TO clicks_away")
    second = mixed_clicks(links, 300, seed=22)
    await pipeline.send(second)
    truth = ground_truth(first + second)

    async def live_counts_moved() -> bool:  # Redis is written before the PostgreSQL sink
        return [await pipeline.redis_counts(x["id"]) for x in links] == [
            (truth["total"][x["id"]], truth["unique"][x["id"]]) for x in links
        ]

    assert await wait_until(live_counts_moved, within=90), pipeline.worker.log_tail(200)

    async def retrying() -> bool:
        return "write failed, retrying target=postgres" in pipeline.worker.log_tail(2000)

    assert await wait_until(retrying, within=60), pipeline.worker.log_tail(200)
    await asyncio.sleep(2)  # a few more failed attempts
    await pipeline.pg("ALTER TABLE clicks_away RENAME TO clicks")
    await settled(
        pipeline, {x["id"]: (truth["total"][x["id"]], truth["unique"][x["id"]]) for x in links}, within=90
    )
