"""QR scans and bio button clicks counted by the real worker: qr_codes.scan_count and
bio_page_links.click_count exact in PostgreSQL under re-sent copies and a full replay, and the
`qr.scanned` / `bio.clicked` webhooks delivered, signed, only to the webhooks subscribed to them."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from engine.bio import repository as bio_repository
from engine.clicks.models import RawClick
from engine.qr import repository as qr_repository
from engine.qr import service as qr_service
from engine.qr.marker import qr_marker
from tests.conftest import ApiHarness
from tests.fakes.api import serve_api
from tests.fakes.webhook_receiver import serve_receiver
from tests.integration.helpers import verify_webhook
from tests.pipeline_fixtures import (
    HUMAN_UA,
    PARTITIONS,
    Pipeline,
    commit_click_offsets,
    make_links,
    raw_click,
    settled,
    source_counts,
    wait_until,
)

pytestmark = pytest.mark.integration

# Read by the `pipeline` fixture: the receiver listens on 127.0.0.1, and click batches every 0.5 s.
WORKER_ENV = {"LINKRIFT_WEBHOOK_ALLOW_PRIVATE": "true", "LINKRIFT_WEBHOOK_CLICK_BATCH_SECONDS": "0.5"}


async def _qr_code(conn: asyncpg.Connection, link: dict[str, str]) -> str:
    """A dynamic QR code of the link, stored as it is (test data: no audit row)."""
    qr_id = str(uuid.uuid4())
    png, svg = qr_service.public_urls("http://s.test", qr_id)
    await qr_repository.insert_qr(conn, qr_id, link["id"], png, svg, {})
    return qr_id


async def _bio_buttons(conn: asyncpg.Connection, workspace_id: str, n: int) -> tuple[str, list[str]]:
    page = await bio_repository.insert_page(
        conn, workspace_id, {"slug": f"p{uuid.uuid4().hex[:8]}", "title": "P", "is_published": True}
    )
    buttons = [
        await bio_repository.insert_link(
            conn, str(page["id"]), {"title": f"B{i}", "url": f"https://b{i}.example.com/"}
        )
        for i in range(n)
    ]
    return str(page["id"]), [str(b["id"]) for b in buttons]


def scan(link: dict[str, str], qr_code_id: str, visitor: str = "v") -> RawClick:
    return replace(raw_click(link, visitor=visitor, ua=HUMAN_UA), kind="qr", qr_code_id=qr_code_id)


def bio(button_id: str, workspace_id: str, visitor: str = "v") -> RawClick:
    """A bio button click as api/bio.py emits it: the button id is the click's link_id too."""
    link = {"id": button_id, "workspace_id": workspace_id, "short_code": "@p"}
    return replace(
        raw_click(link, visitor=visitor, ua=HUMAN_UA),
        kind="bio",
        bio_link_id=button_id,
        destination="https://b.example.com/",
    )


async def _processed(p: Pipeline, clicks: Iterable[RawClick]) -> None:
    """Send one fresh click per key and wait until they are in PostgreSQL `clicks`: a key's clicks
    are consumed in offset order, so everything sent before them has been handled too."""
    sentinels = list(clicks)
    await p.send(sentinels)
    ids = [c.event_id for c in sentinels]

    async def stored() -> bool:
        rows = await p.pg("SELECT count(*) AS n FROM clicks WHERE event_id = ANY($1::text[])", ids)
        return rows[0]["n"] == len(ids)

    assert await wait_until(stored, within=60), p.worker.log_tail()


async def test_scan_and_bio_click_counts_are_exact_under_resends_and_replay(pipeline: Pipeline) -> None:
    p = pipeline
    link1, link2 = await make_links(p.database_url, 1, 2)
    ws = link1["workspace_id"]
    conn = await asyncpg.connect(p.database_url)
    try:
        qr_a, qr_b, qr_c = (
            await _qr_code(conn, link1),
            await _qr_code(conn, link1),
            await _qr_code(conn, link2),
        )
        _, (b1, b2, b3) = await _bio_buttons(conn, ws, 3)
    finally:
        await conn.close()

    clicks = [
        *(scan(link1, qr_a, f"v{i % 4}") for i in range(7)),
        *(scan(link1, qr_b) for _ in range(3)),
        *(scan(link2, qr_c) for _ in range(2)),
        *(scan(link2, qr_a) for _ in range(2)),  # qr_a's marker pasted onto link2: not a scan of qr_a
        *(raw_click(link1, visitor="plain", ua=HUMAN_UA) for _ in range(4)),  # not scans
        scan(link1, "not-a-uuid"),  # untrusted ids are skipped, the batch still lands
        replace(scan(link1, qr_b), kind="redirect"),  # an id without its kind is no scan
        *(bio(b1, ws, f"v{i}") for i in range(5)),
        *(bio(b2, ws) for _ in range(2)),
        replace(bio(b3, ws), bio_link_id="x' OR 1=1 --"),  # not a UUID: no count, no failure
        replace(bio(b3, ws), bio_link_id=b1),  # another button's id on b3's key: not b1's click
    ]
    await p.send(clicks)
    await p.send([c for c in clicks if c.kind != "redirect"][::3])  # re-sent copies: dropped
    expected = {qr_a: 7, qr_b: 3, qr_c: 2, b1: 5, b2: 2, b3: 0}
    await _processed(p, [raw_click(x, visitor="s", ua=HUMAN_UA) for x in (link1, link2)])
    await _processed(p, [replace(bio(b, ws, "s"), kind="redirect", bio_link_id="") for b in (b1, b2, b3)])

    async def exact() -> bool:
        return await source_counts(p) == expected

    totals = {link1["id"]: 7 + 3 + 4 + 1 + 1 + 1, link2["id"]: 2 + 2 + 1}
    await settled(p, {link_id: (n, None) for link_id, n in totals.items()}, sources=expected)
    assert await source_counts(p) == expected
    links = {r["id"]: r["total_clicks"] for r in await p.pg("SELECT id::text, total_clicks FROM links")}
    assert links == totals

    # A full replay: the tables keep their counts, and the replayed batches rewrite the absolute
    # values into PostgreSQL (zeroed here while the worker is down) without counting anything twice.
    await p.worker.stop()
    await p.pg("UPDATE qr_codes SET scan_count = 0")
    await p.pg("UPDATE bio_page_links SET click_count = 0")
    await commit_click_offsets(p, {n: 0 for n in range(PARTITIONS)})
    await p.worker.start()
    await _processed(p, [scan(link1, qr_a, "after"), bio(b2, ws, "after")])
    expected |= {qr_a: 8, b2: 3}
    assert await wait_until(exact, within=20), await source_counts(p)
    async with aiohttp.ClientSession() as http, http.get(f"{p.worker.url}/metrics") as resp:
        metrics = await resp.text()
    replayed = re.search(r"^linkrift_clicks_replayed_skipped_total (\S+)$", metrics, re.M)
    assert replayed and float(replayed.group(1)) >= len(clicks)  # the replay did happen
    assert "Traceback" not in p.worker.log_tail(400)


async def _created(api: ApiHarness, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.client.post(path, json=body, headers=api.auth)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def test_qr_scanned_and_bio_clicked_webhooks_through_the_worker(
    pipeline: Pipeline,
    make_settings: Any,
    database_url: str,
    broker: Any,
    namespace: str,
) -> None:
    p = pipeline
    # The api seals webhook secrets with the key the worker opens them with (see worker_env).
    async with (
        serve_receiver() as receiver,
        serve_api(
            make_settings,
            database_url,
            broker,
            webhook_allow_private=True,
            secret_key=f"test-secret-{namespace}",
        ) as api,
    ):
        # Hooks first: the worker caches a workspace's subscribers for a few seconds.
        hooks: dict[str, dict[str, Any]] = {}
        for name, events in {
            "qr": ["qr.scanned"],
            "bio": ["bio.clicked"],
            "clicks": ["link.clicked"],
            "other": ["link.deleted"],
        }.items():
            hooks[name] = await _created(api, "/api/v1/webhooks", {"url": receiver.url, "events": events})

        link = await _created(api, "/api/v1/links", {"url": "https://dest.example.com/"})
        qr = await _created(api, f"/api/v1/links/{link['id']}/qr-codes", {})
        page = await _created(api, "/api/v1/bio-pages", {"slug": "hooks", "title": "H", "is_published": True})
        button = await _created(
            api, f"/api/v1/bio-pages/{page['id']}/links", {"title": "B", "url": "https://b.example.com/x"}
        )
        ua = {"User-Agent": HUMAN_UA}
        for _ in range(2):  # two dynamic QR scans, one plain redirect, one bio button click
            resp = await api.client.get(
                f"/{link['short_code']}?qr={qr_marker(qr['id'])}", headers=ua, allow_redirects=False
            )
            assert resp.status == 302
        assert (
            await api.client.get(f"/{link['short_code']}", headers=ua, allow_redirects=False)
        ).status == 302
        resp = await api.client.get(f"/@hooks/l/{button['id']}", headers=ua, allow_redirects=False)
        assert resp.status == 302

        def items(event: str, key: str) -> list[dict[str, Any]]:
            return [
                item
                for _, body in receiver.received
                if (payload := orjson.loads(body))["type"] == event
                for item in payload["data"][key]
            ]

        async def delivered() -> bool:
            return (
                len(items("qr.scanned", "scans")) >= 2
                and len(items("bio.clicked", "clicks")) >= 1
                and len(items("link.clicked", "clicks")) >= 4
            )

        assert await wait_until(delivered, within=60), (receiver.received, p.worker.log_tail())
        # The webhooks read the live feed, which the worker writes before PostgreSQL.
        await settled(p, {link["id"]: (3, None)}, sources={qr["id"]: 2, button["id"]: 1})
        async with api.client.get(f"/api/v1/links/{link['id']}/qr-codes/{qr['id']}", headers=api.auth) as r:
            assert (await r.json())["scan_count"] == 2  # counted by the worker

    scans = items("qr.scanned", "scans")
    assert len(scans) == 2 and len({s["event_id"] for s in scans}) == 2
    for s in scans:
        assert (s["qr_code_id"], s["link_id"], s["short_code"]) == (qr["id"], link["id"], link["short_code"])
        assert s["device_type"] == "desktop" and time.time() - 120 < s["ts"] <= time.time()
    [click] = items("bio.clicked", "clicks")
    assert (click["bio_page_id"], click["bio_link_id"], click["url"]) == (
        page["id"],
        button["id"],
        "https://b.example.com/x",
    )
    kinds = sorted(c["kind"] for c in items("link.clicked", "clicks"))
    assert kinds == ["bio", "qr", "qr", "redirect"]

    # Each delivery verifies with exactly one hook's secret: that is the hook it was sent to.
    types_by_hook: dict[str, set[str]] = {name: set() for name in hooks}
    for headers, body in receiver.received:
        [name] = [n for n, h in hooks.items() if verify_webhook(h["secret"], headers, body)]
        types_by_hook[name].add(orjson.loads(body)["type"])
    assert types_by_hook == {
        "qr": {"qr.scanned"},
        "bio": {"bio.clicked"},
        "clicks": {"link.clicked"},
        "other": set(),
    }
