"""Outgoing webhooks against a real local receiver: CRUD, SSRF guard, signatures, retries,
auto-disable, restart safety, delivery log, redelivery and batched link.clicked, qr.scanned and
bio.clicked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio

from engine.auth import webhook_signing
from engine.auth.crypto import SecretBox
from engine.bio import repository as bio_repository
from engine.naming import RedisKeys
from engine.webhooks import repository
from engine.webhooks.click_batches import batch_clicks
from engine.webhooks.delivery import DeliveryPolicy, WebhookDispatcher
from engine.webhooks.events import from_link_change
from tests.conftest import ApiHarness, _make_principal
from tests.fakes.api import serve_api
from tests.fakes.webhook_receiver import WebhookReceiver as Receiver
from tests.integration.helpers import verify_webhook

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def hooks_api(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any
) -> AsyncIterator[ApiHarness]:
    async with serve_api(
        make_settings,
        database_url,
        broker,
        webhook_allow_private=True,
        webhook_retry_schedule="0.05,0.05",
        webhook_timeout_seconds=0.5,
        webhook_max_failures=3,
    ) as harness:
        yield harness


def policy(**overrides: Any) -> DeliveryPolicy:
    values: dict[str, Any] = {
        "schedule": (0.05, 0.05),
        "timeout": 0.5,
        "max_failures": 10,
        "allow_private": True,
    }
    values.update(overrides)
    return DeliveryPolicy(**values)


async def create_hook(api: ApiHarness, url: str, events: list[str] | None = None) -> dict[str, Any]:
    resp = await api.client.post(
        "/api/v1/webhooks", json={"url": url, "events": events or ["link.created"]}, headers=api.auth
    )
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def drain(dispatcher: WebhookDispatcher, pool: asyncpg.Pool, seconds: float = 3.0) -> None:
    """Run the delivery loop until no delivery is pending (or time runs out)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await dispatcher.deliver_due()
        async with pool.acquire() as conn:
            if not await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"):
                return
        await asyncio.sleep(0.03)


async def test_crud_secret_once_and_encrypted(hooks_api: ApiHarness, receiver: Receiver) -> None:
    hook = await create_hook(hooks_api, receiver.url, ["link.created", "link.deleted", "link.created"])
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["link.created", "link.deleted"]
    listed = await (await hooks_api.client.get("/api/v1/webhooks", headers=hooks_api.auth)).json()
    assert [h["id"] for h in listed["data"]] == [hook["id"]] and "secret" not in listed["data"][0]
    conn = await asyncpg.connect(hooks_api.settings.database_url)
    try:
        stored = await conn.fetchval("SELECT secret FROM webhooks WHERE id = $1", hook["id"])
    finally:
        await conn.close()
    assert (
        stored != hook["secret"]
        and SecretBox(hooks_api.settings.secret_key).decrypt(stored) == hook["secret"]
    )
    resp = await hooks_api.client.patch(
        f"/api/v1/webhooks/{hook['id']}", json={"events": ["link.clicked"]}, headers=hooks_api.auth
    )
    assert resp.status == 200 and (await resp.json())["events"] == ["link.clicked"]
    other = await hooks_api.create_principal()
    stranger = {"Authorization": f"Bearer {other['api_key']}"}
    assert (await hooks_api.client.get(f"/api/v1/webhooks/{hook['id']}", headers=stranger)).status == 404
    assert (
        await hooks_api.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=hooks_api.auth)
    ).status == 204
    assert (
        await hooks_api.client.get(f"/api/v1/webhooks/{hook['id']}", headers=hooks_api.auth)
    ).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "events": ["link.created"]}, "url"),
        ({"url": "https://example.com/x", "events": ["link.bogus"]}, "events"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x"}, "events"),
        ({"events": ["link.created"]}, "url"),
        ({"url": "https://user:pw@example.com/", "events": ["link.created"]}, "url"),
    ],
)
async def test_invalid_webhook_input_names_the_field(
    hooks_api: ApiHarness, body: dict[str, Any], field: str
) -> None:
    resp = await hooks_api.client.post("/api/v1/webhooks", json=body, headers=hooks_api.auth)
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == field


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/", "http://[::1]/"],
)
async def test_private_targets_refused_by_default(api: ApiHarness, url: str) -> None:
    assert api.settings.webhook_allow_private is False
    resp = await api.client.post(
        "/api/v1/webhooks", json={"url": url, "events": ["link.created"]}, headers=api.auth
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "url"


async def test_viewer_scope_cannot_manage_webhooks(hooks_api: ApiHarness) -> None:
    reader = await _make_principal(hooks_api.settings.database_url, scopes=["webhooks:read"])
    headers = {"Authorization": f"Bearer {reader['api_key']}"}
    assert (await hooks_api.client.get("/api/v1/webhooks", headers=headers)).status == 200
    resp = await hooks_api.client.post(
        "/api/v1/webhooks", json={"url": "https://example.com", "events": ["link.created"]}, headers=headers
    )
    assert resp.status == 403


async def test_test_delivery_is_signed_per_docs(hooks_api: ApiHarness, receiver: Receiver) -> None:
    hook = await create_hook(hooks_api, receiver.url)
    resp = await hooks_api.client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=hooks_api.auth)
    assert resp.status == 200
    delivery = await resp.json()
    assert delivery["status"] == "succeeded" and delivery["response_status"] == 200
    assert len(delivery["response_body"]) == 1024  # truncated to 1 KiB
    [(headers, body)] = receiver.received
    assert verify_webhook(hook["secret"], headers, body)
    webhook_signing.verify(hook["secret"], headers, body)
    assert not verify_webhook(hook["secret"], headers, body + b" ")
    assert orjson.loads(body)["type"] == "webhook.test" and headers["webhook-id"] == delivery["event_id"]


async def test_rotation_signs_with_both_secrets(hooks_api: ApiHarness, receiver: Receiver) -> None:
    hook = await create_hook(hooks_api, receiver.url)
    resp = await hooks_api.client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=hooks_api.auth)
    new_secret = (await resp.json())["secret"]
    assert new_secret != hook["secret"]
    await hooks_api.client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=hooks_api.auth)
    [(headers, body)] = receiver.received
    assert len(headers["webhook-signature"].split()) == 2
    assert verify_webhook(new_secret, headers, body) and verify_webhook(hook["secret"], headers, body)
    conn = await asyncpg.connect(hooks_api.settings.database_url)
    try:  # the grace period ends: only the new secret signs
        await conn.execute("UPDATE webhooks SET previous_secret_expires_at = now() - interval '1 s'")
    finally:
        await conn.close()
    await hooks_api.client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=hooks_api.auth)
    headers, body = receiver.received[1]
    assert len(headers["webhook-signature"].split()) == 1
    assert verify_webhook(new_secret, headers, body) and not verify_webhook(hook["secret"], headers, body)


async def test_retries_on_5xx_and_timeout_then_succeeds(
    hooks_api: ApiHarness, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    hook = await create_hook(hooks_api, receiver.url)
    receiver.script = [500, "sleep"]
    dispatcher = WebhookDispatcher(pool, SecretBox(hooks_api.settings.secret_key), policy())
    try:
        ids = await dispatcher.publish(hooks_api.workspace_id, "evt_1", "link.created", {"link_id": "l1"})
        assert len(ids) == 1
        await drain(dispatcher, pool)
    finally:
        await dispatcher.close()
    assert len(receiver.received) == 3
    assert {h["webhook-id"] for h, _ in receiver.received} == {"evt_1"}  # stable id across retries
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", ids[0])
        hook_row = await conn.fetchrow("SELECT * FROM webhooks WHERE id = $1", hook["id"])
    assert row["status"] == "succeeded" and row["attempt"] == 3 and row["delivered_at"] is not None
    assert hook_row["failure_count"] == 0 and hook_row["last_success_at"] is not None


async def test_exhausted_retries_go_dead_and_hook_auto_disables(
    hooks_api: ApiHarness, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    hook = await create_hook(hooks_api, receiver.url)
    receiver.default = 503
    dead: list[dict[str, Any]] = []
    disabled: list[str] = []

    async def on_dead(record: dict[str, Any]) -> None:
        dead.append(record)

    async def on_disabled(webhook_id: str, workspace_id: str) -> None:
        disabled.append(webhook_id)

    box = SecretBox(hooks_api.settings.secret_key)
    dispatcher = WebhookDispatcher(
        pool, box, policy(max_failures=4), on_dead=on_dead, on_disabled=on_disabled
    )
    try:
        await dispatcher.publish(hooks_api.workspace_id, "evt_a", "link.created", {})
        await drain(dispatcher, pool)
        assert [d["event_id"] for d in dead] == ["evt_a"] and dead[0]["attempts"] == 3
        assert disabled == []
        await dispatcher.publish(hooks_api.workspace_id, "evt_b", "link.created", {})
        await dispatcher.deliver_due()  # 4th consecutive failure: disabled
        assert disabled == [hook["id"]]
        assert await dispatcher.publish(hooks_api.workspace_id, "evt_c", "link.created", {}) == []
        await asyncio.sleep(0.1)
        assert await dispatcher.deliver_due() == 0  # evt_b's retry is not attempted either
    finally:
        await dispatcher.close()
    assert len(receiver.received) == 4
    got = await (await hooks_api.client.get(f"/api/v1/webhooks/{hook['id']}", headers=hooks_api.auth)).json()
    assert got["is_active"] is False and got["failure_count"] == 4


async def test_disabled_hook_receives_nothing(
    hooks_api: ApiHarness, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    hook = await create_hook(hooks_api, receiver.url)
    resp = await hooks_api.client.patch(
        f"/api/v1/webhooks/{hook['id']}", json={"is_active": False}, headers=hooks_api.auth
    )
    assert (await resp.json())["is_active"] is False
    dispatcher = WebhookDispatcher(pool, SecretBox(hooks_api.settings.secret_key), policy())
    try:
        assert await dispatcher.publish(hooks_api.workspace_id, "evt_x", "link.created", {}) == []
        async with pool.acquire() as conn:  # a delivery queued before the hook was disabled
            await repository.enqueue(conn, [hook["id"]], "evt_old", "link.created", {})
        assert await dispatcher.deliver_due() == 0
    finally:
        await dispatcher.close()
    assert receiver.received == []


async def test_worker_restart_loses_no_pending_delivery(
    hooks_api: ApiHarness, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    await create_hook(hooks_api, receiver.url)
    box = SecretBox(hooks_api.settings.secret_key)
    first = WebhookDispatcher(pool, box, policy(lease_seconds=0.2))
    await first.publish(hooks_api.workspace_id, "evt_queued", "link.created", {})
    await first.publish(hooks_api.workspace_id, "evt_inflight", "link.created", {})
    async with pool.acquire() as conn:  # the first worker leased one delivery and died mid-POST
        leased = await repository.claim_due(conn, 1, 0.2)
    assert len(leased) == 1
    await first.close()
    fresh = WebhookDispatcher(pool, box, policy())
    try:
        assert await fresh.deliver_due() == 1  # the leased one is not due yet
        await asyncio.sleep(0.3)
        assert await fresh.deliver_due() == 1
    finally:
        await fresh.close()
    assert sorted(h["webhook-id"] for h, _ in receiver.received) == ["evt_inflight", "evt_queued"]


async def test_delivery_log_pages_and_redeliver(
    hooks_api: ApiHarness, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    hook = await create_hook(hooks_api, receiver.url)
    async with pool.acquire() as conn:
        for i in range(5):
            await repository.enqueue(conn, [hook["id"]], f"evt_{i}", "link.created", {"i": i})
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        resp = await hooks_api.client.get(
            f"/api/v1/webhooks/{hook['id']}/deliveries", params=query, headers=hooks_api.auth
        )
        page = await resp.json()
        seen += [d["event_id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"evt_{i}" for i in range(5)] and len(set(seen)) == 5
    bad = await hooks_api.client.get(
        f"/api/v1/webhooks/{hook['id']}/deliveries", params={"cursor": "nope"}, headers=hooks_api.auth
    )
    assert bad.status == 422 and (await bad.json())["error"]["field"] == "cursor"
    receiver.default = 500
    dispatcher = WebhookDispatcher(pool, SecretBox(hooks_api.settings.secret_key), policy(schedule=()))
    await dispatcher.deliver_due()
    await dispatcher.close()
    async with pool.acquire() as conn:
        dead_id = await conn.fetchval("SELECT id FROM webhook_deliveries WHERE event_id = 'evt_0'")
        assert await conn.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", dead_id) == "dead"
    receiver.default = 200
    resp = await hooks_api.client.post(
        f"/api/v1/webhooks/{hook['id']}/deliveries/{dead_id}/redeliver", headers=hooks_api.auth
    )
    assert resp.status == 202 and (await resp.json())["status"] == "succeeded"
    assert receiver.received[-1][0]["webhook-id"] == "evt_0"


async def test_link_change_maps_to_one_delivery_per_hook(
    hooks_api: ApiHarness, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    await create_hook(hooks_api, receiver.url, ["link.deleted"])
    await create_hook(hooks_api, receiver.url, ["link.created"])
    change = {
        "event": "deleted",
        "link_id": "abc",
        "workspace_id": hooks_api.workspace_id,
        "short_code": "x",
        "domain_id": "",
        "at": "2026-01-01T00:00:00+00:00",
    }
    mapped = from_link_change(change)
    assert mapped is not None and mapped[1] == "link.deleted"
    dispatcher = WebhookDispatcher(pool, SecretBox(hooks_api.settings.secret_key), policy())
    try:
        assert len(await dispatcher.publish(hooks_api.workspace_id, *mapped)) == 1
        assert await dispatcher.publish(hooks_api.workspace_id, *mapped) == []  # re-consumed change
        await drain(dispatcher, pool)
    finally:
        await dispatcher.close()
    [(_, body)] = receiver.received
    assert orjson.loads(body)["data"]["link_id"] == "abc"


async def test_link_clicked_is_batched_from_the_click_feed(
    hooks_api: ApiHarness, receiver: Receiver, pool: asyncpg.Pool, redis_client: Any
) -> None:
    await create_hook(hooks_api, receiver.url, ["link.clicked"])
    keys = RedisKeys(hooks_api.settings.namespace)
    feed = keys.click_feed(hooks_api.workspace_id)
    now_ms = int(time.time() * 1000) + 1000
    for i in range(7):
        data = orjson.dumps({"event_id": f"c{i}", "link_id": "l", "workspace_id": hooks_api.workspace_id})
        await redis_client.xadd(feed, {"event_id": f"c{i}", "data": data}, id=f"{now_ms}-{i}")
    dispatcher = WebhookDispatcher(pool, SecretBox(hooks_api.settings.secret_key), policy())
    try:
        # A full batch (5) means more may wait: one pass keeps going until a short batch.
        assert await batch_clicks(dispatcher, redis_client, keys, batch_size=5) == 7
        assert await batch_clicks(dispatcher, redis_client, keys, batch_size=5) == 0
        await redis_client.delete(keys.webhook_click_cursor(hooks_api.workspace_id))
        await redis_client.set(keys.webhook_click_cursor(hooks_api.workspace_id), f"{now_ms - 1}-0")
        await batch_clicks(dispatcher, redis_client, keys, batch_size=5)  # replay after a lost cursor
        await drain(dispatcher, pool)
    finally:
        await dispatcher.close()
    batches = [orjson.loads(body)["data"]["clicks"] for _, body in receiver.received]
    assert sorted(len(b) for b in batches) == [2, 5]
    assert sorted(c["event_id"] for b in batches for c in b) == [f"c{i}" for i in range(7)]


async def test_qr_scanned_and_bio_clicked_are_batched_from_their_kind_of_click(
    hooks_api: ApiHarness, receiver: Receiver, pool: asyncpg.Pool, redis_client: Any
) -> None:
    await create_hook(hooks_api, receiver.url, ["qr.scanned"])
    await create_hook(hooks_api, receiver.url, ["bio.clicked"])
    async with pool.acquire() as conn:
        page = await bio_repository.insert_page(conn, hooks_api.workspace_id, {"slug": "feed", "title": "F"})
        button = await bio_repository.insert_link(
            conn, str(page["id"]), {"title": "B", "url": "https://b.example.com/"}
        )
    keys = RedisKeys(hooks_api.settings.namespace)
    feed = keys.click_feed(hooks_api.workspace_id)
    now_ms = int(time.time() * 1000) + 1000
    special = {
        10: {"kind": "qr", "qr_code_id": "q1"},
        1500: {"kind": "qr", "qr_code_id": "q2", "country_code": "FR", "device_type": "mobile"},
        2000: {"kind": "bio", "bio_link_id": str(button["id"]), "destination": "https://b.example.com/"},
        2100: {"kind": "bio", "bio_link_id": "not-a-uuid", "destination": "https://x.example.com/"},
        2400: {"kind": "qr", "qr_code_id": "q3"},
    }
    pipe = redis_client.pipeline(transaction=False)
    for i in range(2500):  # mostly plain redirects: the qr/bio batches page through them
        click = {"event_id": f"c{i}", "ts": 1.0, "link_id": "l", "short_code": "s", "kind": "redirect"}
        click |= special.get(i, {})
        pipe.xadd(feed, {"event_id": f"c{i}", "data": orjson.dumps(click)}, id=f"{now_ms}-{i}")
    await pipe.execute()
    dispatcher = WebhookDispatcher(pool, SecretBox(hooks_api.settings.secret_key), policy())
    try:
        assert await batch_clicks(dispatcher, redis_client, keys, batch_size=2) == 3 + 2  # 3 scans, 2 bio
        assert await batch_clicks(dispatcher, redis_client, keys, batch_size=2) == 0
        qr_cursor = keys.webhook_click_cursor(hooks_api.workspace_id, "qr.scanned")
        assert await redis_client.get(qr_cursor) == f"{now_ms}-2499".encode()
        assert await redis_client.get(keys.webhook_click_cursor(hooks_api.workspace_id)) is None
        await redis_client.set(qr_cursor, f"{now_ms - 1}-0")  # a lost cursor: the same batches again
        assert await batch_clicks(dispatcher, redis_client, keys, batch_size=2) == 3
        await drain(dispatcher, pool)
    finally:
        await dispatcher.close()
    bodies = [orjson.loads(body) for _, body in receiver.received]
    assert sorted(b["type"] for b in bodies) == ["bio.clicked", "qr.scanned", "qr.scanned"]
    scans = sorted(
        (s for b in bodies if b["type"] == "qr.scanned" for s in b["data"]["scans"]),
        key=lambda s: s["qr_code_id"],
    )
    assert [(s["qr_code_id"], s["country_code"], s["device_type"]) for s in scans] == [
        ("q1", None, None),
        ("q2", "FR", "mobile"),
        ("q3", None, None),
    ]
    [bio] = [b["data"]["clicks"] for b in bodies if b["type"] == "bio.clicked"]
    assert [(c["bio_link_id"], c["bio_page_id"], c["url"]) for c in bio] == [
        (str(button["id"]), str(page["id"]), "https://b.example.com/"),
        ("not-a-uuid", None, "https://x.example.com/"),
    ]
