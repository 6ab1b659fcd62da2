"""Usage per billing period: counting, quota enforcement, soft click notices, metered reporting.

The period is the active subscription's current period, else the calendar month (UTC). Links are
counted by when they were added (deleted ones too: creating is what the plan limits): `created_at`,
or `imported_at` for imported links, whose `created_at` is the source's date. Clicks come from
the PostgreSQL `clicks` table without bots: both exact and already indexed by workspace and time.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg

from engine.billing.gateway import StripeGateway
from engine.billing.plans import Plan, Resource, check_quota, limits_for, within_quota

log = logging.getLogger(__name__)

NOTICE_KEY = "billing_notice"
_LIVE = "('active', 'trialing', 'past_due')"
_PERIOD_START = f"""
SELECT COALESCE(
    (SELECT current_period_start FROM subscriptions
     WHERE workspace_id = $1 AND status IN {_LIVE} ORDER BY current_period_start DESC LIMIT 1),
    date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
"""
# The expression of idx_links_workspace_added (migrations/postgres/000012).
_COUNT_LINKS = (
    "SELECT count(*) FROM links WHERE workspace_id = $1 AND COALESCE(imported_at, created_at) >= $2"
)
_COUNT_CLICKS = "SELECT count(*) FROM clicks WHERE workspace_id = $1 AND clicked_at >= $2 AND NOT is_bot"


async def period_start(conn: asyncpg.Connection, workspace_id: str) -> datetime:
    value = await conn.fetchval(_PERIOD_START, workspace_id)
    return (
        value if isinstance(value, datetime) else datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0)
    )


async def lock_quota(conn: asyncpg.Connection, workspace_id: str, resource: Resource) -> str:
    """Serialize the quota checks of one (workspace, resource) until the caller's transaction ends,
    so two concurrent creations cannot both take the last unit; returns the workspace's plan.

    An advisory lock rather than a row lock: `FOR UPDATE` on the workspace row would also block
    every insert that references the workspace (their foreign-key checks take KEY SHARE locks).
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"quota:{resource}:{workspace_id}"
    )
    plan = await conn.fetchval("SELECT plan FROM workspaces WHERE id = $1", workspace_id)
    return str(plan) if plan is not None else Plan.FREE.value


async def enforce_link_quota(conn: asyncpg.Connection, workspace_id: str, adding: int = 1) -> None:
    """Raise QuotaExceeded (402, field links_per_month) if `adding` more links exceed the plan.

    Call it inside the link-creating transaction, before the INSERT (it holds the quota lock
    until that transaction ends).
    """
    plan = await conn.fetchval("SELECT plan FROM workspaces WHERE id = $1", workspace_id)
    if limits_for(str(plan)).links_per_month is None:
        return
    plan = await lock_quota(conn, workspace_id, "links_per_month")
    created = await conn.fetchval(_COUNT_LINKS, workspace_id, await period_start(conn, workspace_id))
    check_quota(str(plan), "links_per_month", int(created), adding)


async def refresh_usage(conn: asyncpg.Connection) -> int:
    """Recount links and clicks of every live subscription's current period; returns how many."""
    rows = await conn.fetch(
        f"SELECT id, workspace_id, current_period_start FROM subscriptions WHERE status IN {_LIVE}"
    )
    for row in rows:
        links = await conn.fetchval(_COUNT_LINKS, row["workspace_id"], row["current_period_start"])
        clicks = await conn.fetchval(_COUNT_CLICKS, row["workspace_id"], row["current_period_start"])
        await conn.execute(
            "UPDATE subscriptions SET usage_link_count = $2, usage_click_count = $3, updated_at = now() WHERE id = $1",
            row["id"],
            links,
            clicks,
        )
    return len(rows)


async def update_click_notices(conn: asyncpg.Connection) -> list[str]:
    """Flag (in workspaces.settings.billing_notice) every workspace over its plan's monthly clicks.

    Clicks are never refused for the plan: the flag lets the dashboard nag. Returns flagged ids.
    """
    rows = await conn.fetch(
        "SELECT id, plan, settings ? $1 AS flagged FROM workspaces WHERE deleted_at IS NULL", NOTICE_KEY
    )
    flagged: list[str] = []
    for row in rows:
        workspace_id = str(row["id"])
        limit = limits_for(row["plan"]).clicks_per_month
        if limit is None:
            over, clicks = False, 0
        else:
            clicks = int(
                await conn.fetchval(_COUNT_CLICKS, workspace_id, await period_start(conn, workspace_id))
            )
            over = not within_quota(row["plan"], "clicks_per_month", clicks, 0)
        if over:
            flagged.append(workspace_id)
            notice = {"clicks_over_limit": True, "clicks": clicks, "limit": limit}
            await conn.execute(
                "UPDATE workspaces SET settings = settings || jsonb_build_object($2::text, $3::jsonb) WHERE id = $1",
                workspace_id,
                NOTICE_KEY,
                notice,
            )
        elif row["flagged"]:
            await conn.execute(
                "UPDATE workspaces SET settings = settings - $2::text WHERE id = $1", workspace_id, NOTICE_KEY
            )
    return flagged


async def report_usage(conn: asyncpg.Connection, gateway: StripeGateway) -> int:
    """Send each live subscription's clicks since the last report to the Stripe meter; returns how many
    reports went out. The identifier names the (from, to) range, so a resend is deduplicated."""
    rows = await conn.fetch(
        f"""SELECT id, stripe_subscription_id, stripe_customer_id, usage_click_count, usage_click_reported
            FROM subscriptions WHERE status IN {_LIVE} AND usage_click_count > usage_click_reported"""
    )
    for row in rows:
        delta = row["usage_click_count"] - row["usage_click_reported"]
        identifier = (
            f"{row['stripe_subscription_id']}:{row['usage_click_reported']}:{row['usage_click_count']}"
        )
        await gateway.report_clicks(row["stripe_customer_id"], delta, identifier)
        await conn.execute(
            "UPDATE subscriptions SET usage_click_reported = $2 WHERE id = $1",
            row["id"],
            row["usage_click_count"],
        )
    return len(rows)


async def run_usage_cycle(pool: asyncpg.Pool, gateway: StripeGateway | None) -> None:
    async with pool.acquire() as conn:
        await refresh_usage(conn)
        flagged = await update_click_notices(conn)
        reported = await report_usage(conn, gateway) if gateway is not None else 0
    log.info("billing usage cycle flagged=%s reported=%s", len(flagged), reported)


async def usage_summary(conn: asyncpg.Connection, workspace_id: str) -> dict[str, int]:
    """This period's use of every limited resource (what the plan page shows against the limits)."""
    since = await period_start(conn, workspace_id)
    return {
        "links_per_month": int(await conn.fetchval(_COUNT_LINKS, workspace_id, since)),
        "clicks_per_month": int(await conn.fetchval(_COUNT_CLICKS, workspace_id, since)),
        "custom_domains": int(
            await conn.fetchval(
                "SELECT count(*) FROM domains WHERE workspace_id = $1 AND deleted_at IS NULL", workspace_id
            )
        ),
        "members": int(
            await conn.fetchval(
                "SELECT count(*) FROM workspace_members WHERE workspace_id = $1", workspace_id
            )
        ),
    }
