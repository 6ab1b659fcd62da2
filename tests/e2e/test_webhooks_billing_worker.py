"""Webhooks and billing through a real `linkrift worker` over Kafka, SIGKILLed and restarted.

Link changes travel the product's way (api → outbox → relay agent → `links.changes` → webhook
agent → delivery rows → signed POSTs to a receiver on 127.0.0.1); Stripe events are posted signed
to the api's `/webhooks/stripe` and applied by the worker's `billing_events` agent. The worker is
killed while deliveries are failing, in flight or not yet relayed, and while Stripe events wait.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from engine.auth import webhook_signing
from engine.webhooks.events import from_link_change
from tests.conftest import ApiHarness
from tests.fakes.api import serve_api
from tests.fakes.stripe_server import sign_payload, subscription_event
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.pipeline_fixtures import Pipeline, wait_until

pytestmark = pytest.mark.e2e

WHSEC = "whsec_e2e_stripe"
SUB = "sub_e2e"
SUBSCRIBED = ["link.created", "link.updated"]
# Short retries and leases so a kill costs seconds; enough retries that nothing goes dead here,
# and a failure cap that the failing phase cannot reach.
WORKER_ENV = {
    "LINKRIFT_WEBHOOK_ALLOW_PRIVATE": "true",
    "LINKRIFT_WEBHOOK_RETRY_SCHEDULE": ",".join(["0.5"] * 60),
    "LINKRIFT_WEBHOOK_TIMEOUT_SECONDS": "2",
    "LINKRIFT_WEBHOOK_LEASE_SECONDS": "3",
    "LINKRIFT_WEBHOOK_MAX_FAILURES": "1000",
}


@pytest_asyncio.fixture
async def api(
    pipeline: Pipeline,
    make_settings: Any,
    database_url: str,
    broker: Any,
    redis_client: Any,
) -> AsyncIterator[ApiHarness]:
    """The api in-process on the worker's database and namespace, sharing its secret key (webhook
    secrets are sealed with it), with link-preview fetching off (no network)."""
    async with serve_api(
        make_settings,
        database_url,
        broker,
        secret_key=pipeline.worker.env["LINKRIFT_SECRET_KEY"],
        webhook_allow_private=True,
        metadata_fetch="off",
        stripe_webhook_secret=WHSEC,
    ) as harness:
        yield harness


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def create_link(api: ApiHarness, n: int) -> str:
    resp = await api.client.post("/api/v1/links", json={"url": f"https://example.com/{n}"}, headers=api.auth)
    return str((await _json(resp, 201))["id"])


async def update_link(api: ApiHarness, link_id: str, n: int) -> None:
    resp = await api.client.patch(
        f"/api/v1/links/{link_id}", json={"url": f"https://example.org/{n}"}, headers=api.auth
    )
    await _json(resp, 200)


async def expected_events(p: Pipeline) -> dict[str, dict[str, Any]]:
    """webhook-id → the link change it stands for, for every subscribed change in the outbox."""
    out: dict[str, dict[str, Any]] = {}
    for row in await p.pg("SELECT payload FROM outbox WHERE topic = $1", p.topics.links_changes):
        change = row["payload"] if isinstance(row["payload"], dict) else orjson.loads(row["payload"])
        mapped = from_link_change(change)
        if mapped is not None and mapped[1] in SUBSCRIBED:
            out[mapped[0]] = {"type": mapped[1], **mapped[2]}
    return out


async def test_webhook_deliveries_survive_failures_and_a_sigkill(
    pipeline: Pipeline,
    api: ApiHarness,
    receiver: WebhookReceiver,
) -> None:
    p = pipeline
    receiver.default = 500
    hook = await _json(
        await api.client.post(
            "/api/v1/webhooks", json={"url": receiver.url, "events": SUBSCRIBED}, headers=api.auth
        ),
        201,
    )
    hook_id, secret = hook["id"], hook["secret"]

    # 1. Three links created and two updated while the receiver answers 500.
    links = [await create_link(api, n) for n in range(3)]
    await update_link(api, links[0], 0)
    await update_link(api, links[1], 1)
    first = await expected_events(p)
    assert sorted(e["type"] for e in first.values()) == ["link.created"] * 3 + ["link.updated"] * 2

    async def failed_twice() -> bool:
        rows = await p.pg("SELECT event_id FROM webhook_deliveries WHERE status = 'pending' AND attempt >= 3")
        return {r["event_id"] for r in rows} == set(first)

    assert await wait_until(failed_twice, within=30), p.worker.log_tail()
    # Each recorded failure counts once on the hook, in the same transaction as on its delivery.
    [streak] = await p.pg(
        """SELECT w.failure_count, w.last_success_at,
                  (SELECT sum(d.attempt - 1) FROM webhook_deliveries d WHERE d.webhook_id = w.id) AS failures
           FROM webhooks w WHERE w.id = $1""",
        hook_id,
    )
    assert streak["failure_count"] == streak["failures"] >= 10 and streak["last_success_at"] is None

    # 2. The receiver stops answering; the worker is killed with attempts in flight.
    receiver.default = "hang"

    async def in_flight() -> bool:
        return receiver.hanging > 0

    assert await wait_until(in_flight, within=10, interval=0.05)
    p.worker.kill()
    [killed_at] = await p.pg("SELECT now() AS t")

    # 3. More changes while no worker runs: they wait in the outbox.
    late_link = await create_link(api, 3)
    await update_link(api, links[2], 2)
    unpublished = await p.pg(
        "SELECT count(*) AS n FROM outbox WHERE topic = $1 AND published_at IS NULL", p.topics.links_changes
    )
    assert unpublished[0]["n"] >= 2
    events = await expected_events(p)
    late = set(events) - set(first)
    assert {(e["type"], e["link_id"]) for e in (events[i] for i in late)} == {
        ("link.created", late_link),
        ("link.updated", links[2]),
    }

    # 4. The receiver recovers (the held requests are answered to a dead worker), the worker restarts.
    receiver.default = 200
    receiver.release.set()
    await p.worker.start()

    async def all_delivered() -> bool:
        rows = await p.pg("SELECT event_id FROM webhook_deliveries WHERE status = 'succeeded'")
        return {r["event_id"] for r in rows} == set(events)

    assert await wait_until(all_delivered, within=40), p.worker.log_tail()

    # Every event reached the receiver with a 200, signed as documented; no other event did.
    by_id: dict[str, list[tuple[bytes, int | str]]] = defaultdict(list)
    for (headers, body), action in zip(receiver.received, receiver.actions, strict=True):
        webhook_signing.verify(secret, headers, body)
        by_id[headers["webhook-id"]].append((body, action))
    assert set(by_id) == set(events)
    for msg_id, sent in by_id.items():
        assert any(action == 200 for _, action in sent), msg_id
        # Retries and re-sends carry the same id and the same body: a receiver can dedupe on the id.
        assert len({body for body, _ in sent}) == 1, msg_id
        envelope = orjson.loads(sent[0][0])
        assert envelope["type"] == events[msg_id]["type"]
        assert envelope["data"]["link_id"] == events[msg_id]["link_id"]
    # The attempts held when the worker died were sent again after the restart.
    held = {msg_id for msg_id, sent in by_id.items() if any(action == "hang" for _, action in sent)}
    assert held and all(by_id[msg_id][-1][1] == 200 for msg_id in held)

    # The delivery log: one row per event, the attempts it took, the final answer.
    log = await _json(
        await api.client.get(f"/api/v1/webhooks/{hook_id}/deliveries?limit=100", headers=api.auth), 200
    )
    rows = {d["event_id"]: d for d in log["data"]}
    assert set(rows) == set(events) and len(log["data"]) == len(events)
    for msg_id, d in rows.items():
        assert (d["status"], d["response_status"], d["event_type"]) == (
            "succeeded",
            200,
            events[msg_id]["type"],
        )
        assert d["delivered_at"] is not None and d["next_attempt_at"] is None
        # Every recorded attempt reached the receiver; the killed ones were never recorded.
        assert len(by_id[msg_id]) >= d["attempt"], (msg_id, d["attempt"], len(by_id[msg_id]))
        if msg_id in first:
            assert d["attempt"] >= 3
        else:
            assert d["attempt"] == 1 and len(by_id[msg_id]) == 1

    got = await _json(await api.client.get(f"/api/v1/webhooks/{hook_id}", headers=api.auth), 200)
    assert got["is_active"] is True and got["failure_count"] == 0
    [hook_row] = await p.pg("SELECT last_success_at FROM webhooks WHERE id = $1", hook_id)
    assert hook_row["last_success_at"] > killed_at["t"]


async def post_stripe(api: ApiHarness, event: dict[str, Any]) -> None:
    payload = orjson.dumps(event)
    resp = await api.client.post(
        "/webhooks/stripe", data=payload, headers={"Stripe-Signature": sign_payload(payload, WHSEC)}
    )
    await _json(resp, 200)


async def test_stripe_events_applied_once_across_a_sigkill(
    pipeline: Pipeline,
    api: ApiHarness,
) -> None:
    p, ws = pipeline, api.workspace_id
    t0 = int(time.time())
    checkout = {
        "id": "evt_checkout",
        "object": "event",
        "type": "checkout.session.completed",
        "created": t0,
        "data": {
            "object": {
                "id": "cs_e2e",
                "customer": "cus_1",
                "client_reference_id": ws,
                "metadata": {"workspace_id": ws, "plan": "pro"},
            }
        },
    }
    await post_stripe(api, checkout)
    await post_stripe(api, subscription_event("evt_created", "created", SUB, ws, created=t0))

    async def processed(*ids: str) -> bool:
        rows = await p.pg("SELECT id FROM billing_events_processed WHERE id = ANY($1::text[])", list(ids))
        return len(rows) == len(ids)

    assert await wait_until(lambda: processed("evt_checkout", "evt_created"), within=30), p.worker.log_tail()
    [row] = await p.pg("SELECT plan FROM workspaces WHERE id = $1", ws)
    assert row["plan"] == "pro"

    p.worker.kill()
    # While the worker is down: an upgrade, an older update arriving late (applied, it would bring
    # back `pro`), the upgrade again, the checkout again (applied twice, it would put the workspace
    # back on `pro`: nothing after it sets the plan), then a failed payment.
    upgrade = subscription_event(
        "evt_upgrade", "updated", SUB, ws, created=t0 + 10, price="price_business", cancel=True
    )
    await post_stripe(api, upgrade)
    await post_stripe(
        api, subscription_event("evt_stale", "updated", SUB, ws, created=t0 + 5, price="price_pro")
    )
    await post_stripe(api, upgrade)
    await post_stripe(api, checkout)
    await post_stripe(
        api,
        {
            "id": "evt_payment_failed",
            "object": "event",
            "type": "invoice.payment_failed",
            "created": t0 + 20,
            "data": {"object": {"subscription": SUB, "customer": "cus_1"}},
        },
    )
    await p.worker.start()

    # One key (the workspace), one partition: once the last event is applied, all before it were.
    assert await wait_until(lambda: processed("evt_payment_failed"), within=40), p.worker.log_tail()
    relayed = await p.pg(
        """SELECT payload->>'id' AS id, count(*) AS n, count(published_at) AS published FROM outbox
           WHERE topic = $1 GROUP BY 1""",
        p.topics.billing_events,
    )
    assert {r["id"]: (r["n"], r["published"]) for r in relayed} == {
        "evt_checkout": (2, 2),
        "evt_created": (1, 1),
        "evt_upgrade": (2, 2),
        "evt_stale": (1, 1),
        "evt_payment_failed": (1, 1),
    }
    done = await p.pg("SELECT id, count(*) OVER (PARTITION BY id) AS n FROM billing_events_processed")
    assert sorted((r["id"], r["n"]) for r in done) == [
        ("evt_checkout", 1),
        ("evt_created", 1),
        ("evt_payment_failed", 1),
        ("evt_stale", 1),
        ("evt_upgrade", 1),
    ]
    [sub] = await p.pg(
        """SELECT plan, status, stripe_price_id, cancel_at_period_end,
                  extract(epoch FROM last_event_at)::bigint AS last_event FROM subscriptions"""
    )
    assert dict(sub) == {
        "plan": "business",
        "status": "past_due",
        "stripe_price_id": "price_business",
        "cancel_at_period_end": True,
        "last_event": t0 + 10,
    }
    [row] = await p.pg("SELECT plan FROM workspaces WHERE id = $1", ws)
    assert row["plan"] == "business"  # past_due keeps the paid plan; the repeated checkout did not apply
    customers = await p.pg("SELECT workspace_id::text AS ws, stripe_customer_id FROM billing_customers")
    assert [(r["ws"], r["stripe_customer_id"]) for r in customers] == [(ws, "cus_1")]
