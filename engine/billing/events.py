"""Keep `subscriptions` and `workspaces.plan` in step with Stripe events, once per event id.

Stripe delivers at least once and in no particular order. Each event id is recorded in
`billing_events_processed` in the same transaction as its effect (a redelivery is a no-op), and a
subscription remembers the `created` time of the newest event applied to it, so an older
`customer.subscription.updated` arriving after `deleted` cannot resurrect a canceled plan.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from engine.billing.plans import Plan

log = logging.getLogger(__name__)

# Statuses under which the workspace keeps its paid plan (past_due: Stripe is still retrying).
_PAID_STATUSES = frozenset({"active", "trialing", "past_due"})
HANDLED = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.payment_failed",
    }
)


def _obj(event: Mapping[str, Any]) -> dict[str, Any]:
    data = event.get("data") or {}
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value is not None else None


async def workspace_for_event(conn: asyncpg.Connection, event: Mapping[str, Any]) -> str | None:
    """The workspace an event concerns: our metadata first, then the customer mapping."""
    obj = _obj(event)
    metadata = obj.get("metadata") or {}
    candidate = metadata.get("workspace_id") or obj.get("client_reference_id")
    if candidate:
        return str(candidate)
    customer = obj.get("customer") if obj.get("object") != "customer" else obj.get("id")
    if isinstance(customer, str):
        found = await conn.fetchval(
            "SELECT workspace_id FROM billing_customers WHERE stripe_customer_id = $1", customer
        )
        return str(found) if found else None
    return None


async def apply_event(
    conn: asyncpg.Connection, event: Mapping[str, Any], plans_by_price: Mapping[str, Plan]
) -> bool:
    """Apply one Stripe event; False if this event id was already processed (or is not handled)."""
    event_type = str(event.get("type", ""))
    if event_type not in HANDLED:
        return False
    async with conn.transaction():
        fresh = await conn.fetchval(
            "INSERT INTO billing_events_processed (id, type) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING id",
            str(event["id"]),
            event_type,
        )
        if fresh is None:
            return False
        obj = _obj(event)
        created = _ts(event.get("created")) or datetime.now(UTC)
        if event_type == "checkout.session.completed":
            await _checkout_completed(conn, obj)
        elif event_type.startswith("customer.subscription."):
            await _subscription_changed(
                conn, obj, created, plans_by_price, deleted=event_type.endswith(".deleted")
            )
        else:
            await _payment_failed(conn, obj)
    return True


async def _checkout_completed(conn: asyncpg.Connection, obj: dict[str, Any]) -> None:
    workspace_id = (obj.get("metadata") or {}).get("workspace_id") or obj.get("client_reference_id")
    customer = obj.get("customer")
    if not workspace_id or not isinstance(customer, str):
        log.warning("checkout.session.completed without workspace or customer session=%s", obj.get("id"))
        return
    await conn.execute(
        """INSERT INTO billing_customers (workspace_id, stripe_customer_id) VALUES ($1, $2)
           ON CONFLICT (workspace_id) DO NOTHING""",
        workspace_id,
        customer,
    )
    plan = (obj.get("metadata") or {}).get("plan")
    if plan in {p.value for p in Plan}:
        await conn.execute(
            "UPDATE workspaces SET plan = $2, updated_at = now() WHERE id = $1", workspace_id, plan
        )


def _period(obj: dict[str, Any]) -> tuple[datetime, datetime]:
    """Subscription period; newer API versions moved it onto the subscription items."""
    items = (obj.get("items") or {}).get("data") or [{}]
    start = obj.get("current_period_start") or items[0].get("current_period_start") or obj.get("start_date")
    end = obj.get("current_period_end") or items[0].get("current_period_end") or start
    now = int(datetime.now(UTC).timestamp())
    return _ts(start or now) or datetime.now(UTC), _ts(end or now) or datetime.now(UTC)


def _plan_of(obj: dict[str, Any], plans_by_price: Mapping[str, Plan]) -> tuple[Plan | None, str]:
    items = (obj.get("items") or {}).get("data") or []
    price = ((items[0].get("price") or {}).get("id") if items else None) or ""
    plan = plans_by_price.get(price)
    if plan is None and (meta_plan := (obj.get("metadata") or {}).get("plan")) in {p.value for p in Plan}:
        plan = Plan(meta_plan)
    return plan, price


async def _subscription_changed(
    conn: asyncpg.Connection,
    obj: dict[str, Any],
    created: datetime,
    plans_by_price: Mapping[str, Plan],
    *,
    deleted: bool,
) -> None:
    sub_id = obj.get("id")
    existing = await conn.fetchrow(
        """SELECT workspace_id, plan, status, last_event_at FROM subscriptions
           WHERE stripe_subscription_id = $1 FOR UPDATE""",
        sub_id,
    )
    if (
        existing is not None
        and not deleted
        and (
            existing["status"] == "canceled"
            or (existing["last_event_at"] is not None and created < existing["last_event_at"])
        )
    ):
        # Canceled is terminal in Stripe: an update that arrives afterwards is an older one.
        log.info("ignoring out-of-order subscription event subscription=%s", sub_id)
        return
    workspace_id = (
        existing["workspace_id"] if existing else await workspace_for_event(conn, {"data": {"object": obj}})
    )
    if workspace_id is None:
        log.warning("subscription event for an unknown workspace subscription=%s", sub_id)
        return
    plan, price = _plan_of(obj, plans_by_price)
    if plan is None and existing is not None:
        plan = Plan(existing["plan"])
    if plan is None or plan is Plan.FREE:
        log.warning("subscription with an unknown price subscription=%s price=%s", sub_id, price)
        return
    status = "canceled" if deleted else str(obj.get("status", "active"))
    start, end = _period(obj)
    await conn.execute(
        """INSERT INTO subscriptions (workspace_id, stripe_subscription_id, stripe_customer_id, stripe_price_id,
               plan, status, current_period_start, current_period_end, cancel_at_period_end, last_event_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (stripe_subscription_id) DO UPDATE SET stripe_price_id = EXCLUDED.stripe_price_id,
               plan = EXCLUDED.plan, status = EXCLUDED.status,
               current_period_start = EXCLUDED.current_period_start, current_period_end = EXCLUDED.current_period_end,
               cancel_at_period_end = EXCLUDED.cancel_at_period_end,
               usage_click_reported = CASE WHEN subscriptions.current_period_start = EXCLUDED.current_period_start
                   THEN subscriptions.usage_click_reported ELSE 0 END,
               last_event_at = GREATEST(subscriptions.last_event_at, EXCLUDED.last_event_at), updated_at = now()""",
        workspace_id,
        sub_id,
        str(obj.get("customer", "")),
        price,
        plan.value,
        status,
        start,
        end,
        bool(obj.get("cancel_at_period_end")),
        created,
    )
    workspace_plan = plan.value if status in _PAID_STATUSES else Plan.FREE.value
    await conn.execute(
        "UPDATE workspaces SET plan = $2, updated_at = now() WHERE id = $1", workspace_id, workspace_plan
    )


async def _payment_failed(conn: asyncpg.Connection, obj: dict[str, Any]) -> None:
    sub_id = obj.get("subscription") or (
        ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    )
    if not sub_id:
        return
    await conn.execute(
        """UPDATE subscriptions SET status = 'past_due', updated_at = now()
           WHERE stripe_subscription_id = $1 AND status NOT IN ('canceled', 'past_due')""",
        sub_id,
    )
