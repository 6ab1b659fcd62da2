"""Write enriched clicks and link counters to PostgreSQL, idempotently.

Clicks go through COPY into a session temp table, then one INSERT ... ON CONFLICT (event_id,
clicked_at) DO NOTHING, so a replayed batch adds nothing. Counters are absolute values from the
worker's tables, written with GREATEST so that a late or replayed flush never moves them back;
the same holds for the per-source counters qr_codes.scan_count and bio_page_links.click_count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from engine.clicks.counting import BIO_SOURCE, QR_SOURCE, LinkStats, split_source
from engine.clicks.models import EnrichedClick
from engine.records import uuid_or_none

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


def source_counters(
    stats: Mapping[str, LinkStats],
) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
    """The absolute per-source counters of the given links: QR scans as (qr_code_id, link_id,
    scans) and bio button clicks as (bio_link_id, clicks).

    Ids arrive over the network: anything that is not a UUID is left out instead of failing the
    batch. A bio button's clicks are keyed by the button id, so only that key's stats count them
    (one writer per row).
    """
    qr: list[tuple[str, str, int]] = []
    bio: list[tuple[str, int]] = []
    for key, link_stats in stats.items():
        link_id = uuid_or_none(key)
        if link_id is None:
            continue
        for source, count in link_stats.sources.items():
            kind, raw_id = split_source(source)
            source_id = uuid_or_none(raw_id) if kind else None
            if source_id is None:
                continue
            if kind == QR_SOURCE:
                qr.append((source_id, link_id, count))
            elif kind == BIO_SOURCE and source_id == link_id:
                bio.append((source_id, count))
    return qr, bio


async def flush_source_counters(conn: asyncpg.Connection, stats: Mapping[str, LinkStats]) -> int:
    """Set qr_codes.scan_count and bio_page_links.click_count to the links' absolute per-source
    counts: at most one UPDATE per table. A scan only counts for a QR code of the link that was
    visited, so a marker pasted onto another link's URL never counts. Returns the rows changed."""
    qr, bio = source_counters(stats)
    changed = 0
    if qr:
        qr_ids, link_ids, scans = zip(*qr, strict=True)
        status = await conn.execute(
            """UPDATE qr_codes q SET scan_count = GREATEST(q.scan_count, v.n)
               FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS v(id, link_id, n)
               WHERE q.id = v.id AND q.link_id = v.link_id AND q.scan_count < v.n""",
            list(qr_ids),
            list(link_ids),
            list(scans),
        )
        changed += int(status.split()[-1])
    if bio:
        bio_ids, clicks = zip(*bio, strict=True)
        status = await conn.execute(
            """UPDATE bio_page_links l SET click_count = GREATEST(l.click_count, v.n)
               FROM unnest($1::uuid[], $2::bigint[]) AS v(id, n)
               WHERE l.id = v.id AND l.click_count < v.n""",
            list(bio_ids),
            list(clicks),
        )
        changed += int(status.split()[-1])
    return changed
