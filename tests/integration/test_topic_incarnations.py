"""A topic deleted and created again (an operator, a new cluster, a broker that lost its log) is
another incarnation: its offsets start at 0 again. The worker must notice (one warning per
partition, `linkrift_broker_incarnations_total`), neither skip the new offsets as replays nor
count anything twice, and keep its tables: when the changelog is gone too, it is re-seeded from
the local stores."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient

from engine.clicks.models import RawClick
from engine.kafka import TopicIds, ensure_topics
from tests.pipeline_fixtures import (
    HUMAN_UA,
    PARTITIONS,
    Pipeline,
    ground_truth,
    make_links,
    pipeline,  # noqa: F401 - fixture
    raw_click,
    settled,
    wait_until,
)


async def _metric(p: Pipeline, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{p.worker.url}/metrics") as resp:
        text = await resp.text()
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[1])
    return 0.0


async def _recreate(p: Pipeline, *topics: str) -> None:
    ids = TopicIds(p.bootstrap)
    try:
        before = await ids.get(list(topics))
        admin = AIOKafkaAdminClient(bootstrap_servers=p.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(list(topics))
        finally:
            await admin.close()

        async def gone() -> bool:
            return not await ids.get(list(topics))

        assert await wait_until(gone, within=10)
        await ensure_topics(p.bootstrap, {t: PARTITIONS for t in topics if t == p.topics.clicks_raw})
        if p.topics.clicks_raw in topics:
            after = await ids.get([p.topics.clicks_raw])
            assert after[p.topics.clicks_raw] != before[p.topics.clicks_raw]
    finally:
        await ids.close()


def _clicks(links: list[dict[str, str]], n: int, rng: random.Random) -> list[RawClick]:
    return [
        raw_click(rng.choice(links), visitor=f"v{rng.randrange(30)}", ua=HUMAN_UA, ts=time.time() + i / 1e4)
        for i in range(n)
    ]


async def _exact(p: Pipeline, links: list[dict[str, str]], clicks: list[RawClick]) -> None:
    truth = ground_truth(clicks)
    expected = {x["id"]: truth.per_link.get(x["id"], (0, 0)) for x in links}
    await settled(p, expected, workspaces=dict(truth.per_workspace))
    await asyncio.sleep(1.5)  # a double count would show now
    await settled(p, expected, workspaces=dict(truth.per_workspace), within=5)


async def test_clicks_raw_recreated_under_a_running_worker(pipeline: Pipeline) -> None:  # noqa: F811
    p = pipeline
    rng = random.Random(7)
    links = await make_links(p.database_url, workspaces=1, links_per_workspace=4)
    first = _clicks(links, 300, rng)
    await p.send(first)
    await _exact(p, links, first)

    await _recreate(p, p.topics.clicks_raw)
    # New offsets 0, 1, ... (below what the tables applied), plus copies of clicks already counted
    # (what an api's journal sends again after a broker lost its log): new ones count, copies not.
    second = _clicks(links, 200, rng)
    await p.send([*rng.sample(first, 40), *second])
    await _exact(p, links, [*first, *second])
    assert await _metric(p, "linkrift_broker_incarnations_total", topic=p.topics.clicks_raw) >= 1
    assert "new incarnation of the topic" in p.worker.log_tail(400)


async def test_clicks_raw_and_changelog_recreated_under_a_stopped_worker(pipeline: Pipeline) -> None:  # noqa: F811
    p = pipeline
    rng = random.Random(8)
    links = await make_links(p.database_url, workspaces=2, links_per_workspace=3)
    first = _clicks(links, 300, rng)
    await p.send(first)
    await _exact(p, links, first)

    await p.worker.stop()
    await _recreate(p, p.topics.clicks_raw, p.topics.clicks_state)
    second = _clicks(links, 200, rng)
    await p.send([*second[:100], *rng.sample(first, 30), *second[100:]])
    await p.worker.start()
    await _exact(p, links, [*first, *second])
    assert await _metric(p, "linkrift_broker_incarnations_total", topic=p.topics.clicks_raw) >= 1
    assert await _metric(p, "linkrift_click_state_reseeded_total") >= 1
    log = p.worker.log_tail(400)
    assert "new incarnation of the topic" in log and "re-seeded" in log

    # The re-seeded changelog is the truth from now on: a restart rebuilds the tables from it.
    await p.worker.stop()
    await p.worker.start()
    third = _clicks(links, 100, rng)
    await p.send(third)
    await _exact(p, links, [*first, *second, *third])
