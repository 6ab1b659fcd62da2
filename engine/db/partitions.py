"""Maintenance of the monthly `clicks` partitions: create ahead, drop past retention.

The worker calls both periodically; the SQL function they rely on is created by migration
000003_clicks_partitioned.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import asyncpg

_PARTITION_RE = re.compile(r"^clicks_(\d{4})_(\d{2})$")

_LIST_PARTITIONS = """
SELECT c.relname
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'clicks'::regclass
ORDER BY c.relname
"""


async def ensure_click_partitions(conn: asyncpg.Connection, months_ahead: int = 2) -> list[str]:
    """Create the partitions for this UTC month and `months_ahead` more; return the new names."""
    rows = await conn.fetch("SELECT linkrift_ensure_click_partitions($1) AS name", months_ahead)
    return [str(row["name"]) for row in rows]


def _month_end(year: int, month: int) -> datetime:
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


async def drop_old_click_partitions(
    conn: asyncpg.Connection, retention_days: int, *, now: datetime | None = None
) -> list[str]:
    """Drop monthly partitions whose whole range ends before now - retention; return their names.

    The default partition and anything not named clicks_YYYY_MM are never touched.
    """
    if retention_days < 0:
        raise ValueError("retention_days must be >= 0")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    dropped: list[str] = []
    for row in await conn.fetch(_LIST_PARTITIONS):
        name = str(row["relname"])
        match = _PARTITION_RE.match(name)
        if match is None:
            continue
        if _month_end(int(match[1]), int(match[2])) <= cutoff:
            # The name matched ^clicks_\d{4}_\d{2}$, so it needs no quoting.
            await conn.execute(f"DROP TABLE {name}")
            dropped.append(name)
    return dropped
