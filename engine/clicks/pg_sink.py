"""Write enriched clicks and link counters to PostgreSQL, idempotently.

Clicks go through COPY into a session temp table, then one INSERT ... ON CONFLICT (event_id,
clicked_at) DO NOTHING, so a replayed batch adds nothing. Counters are absolute values from the
worker's tables, written with GREATEST so that a late or replayed flush never moves them back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from engine.clicks.models import EnrichedClick

# clicks column -> (EnrichedClick attribute, max length or None)
_TEXT_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("visitor_id", "visitor_id", 64),
    ("user_agent", "user_agent", None),
    ("referer", "referer", None),
    ("country_code", "country_code", 2),
    ("region", "region", 100),
    ("city", "city", 100),
    ("device_type", "device_type", 20),
    ("browser", "browser", 50),
    ("browser_version", "browser_version", 20),
    ("os", "os", 50),
    ("os_version", "os_version", 20),
    ("utm_source", "utm_source", 255),
    ("utm_medium", "utm_medium", 255),
    ("utm_campaign", "utm_campaign", 255),
)
COLUMNS: tuple[str, ...] = (
    "link_id", "workspace_id", "clicked_at", "ip_address", "is_bot", "is_preview", "kind", "event_id",
    *(c for c, _, _ in _TEXT_COLUMNS),
)  # fmt: skip
_STAGE = "linkrift_clicks_stage"
_COLUMN_LIST = ", ".join(COLUMNS)


def _text(value: str, limit: int | None) -> str | None:
    if not value:
        return None
    return value[:limit] if limit else value


def click_record(click: EnrichedClick) -> tuple[Any, ...]:
    """One `clicks` row in COLUMNS order. Empty strings become NULL (ip_address is INET)."""
    return (
        click.link_id,
        click.workspace_id or None,
        datetime.fromtimestamp(click.ts, UTC),
        click.ip or None,
        click.is_bot,
        click.is_preview,
        click.kind,
        click.event_id,
        *(_text(getattr(click, attr), limit) for _, attr, limit in _TEXT_COLUMNS),
    )


async def insert_clicks(conn: asyncpg.Connection, clicks: Sequence[EnrichedClick]) -> int:
    """COPY clicks into a staging table and insert the new ones; return how many were new."""
    if not clicks:
        return 0
    async with conn.transaction():
        await conn.execute(
            f"""CREATE TEMP TABLE IF NOT EXISTS {_STAGE}
                (LIKE clicks INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"""
        )
        await conn.copy_records_to_table(_STAGE, records=[click_record(c) for c in clicks], columns=COLUMNS)
        status = await conn.execute(
            f"""INSERT INTO clicks ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {_STAGE}
                ON CONFLICT (event_id, clicked_at) DO NOTHING"""
        )
    return int(status.split()[-1])


async def flush_link_counters(conn: asyncpg.Connection, counters: Mapping[str, tuple[int, int]]) -> int:
    """Set links.total_clicks/unique_clicks to the given absolute values in one UPDATE."""
    if not counters:
        return 0
    ids, totals, uniques = zip(*((k, t, u) for k, (t, u) in counters.items()), strict=True)
    status = await conn.execute(
        """UPDATE links l
           SET total_clicks = GREATEST(l.total_clicks, v.total),
               unique_clicks = GREATEST(l.unique_clicks, v.uniq)
           FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS v(id, total, uniq)
           WHERE l.id = v.id AND (l.total_clicks < v.total OR l.unique_clicks < v.uniq)""",
        list(ids),
        list(totals),
        list(uniques),
    )
    return int(status.split()[-1])
