"""Unique visitors through the 16-byte visitor columns (ClickHouse migration 000003) on real chDB.

`unique_visitors_sql()` must count exactly what uniqExact over the non-empty String visitor_id
counts, for every grouping and condition the dashboard uses, whatever the ids look like: real
32-hex ids, empty ids, and ids of any other shape (kept verbatim in visitor_other).
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from engine.analytics.queries import unique_visitors_sql
from engine.clicks.visitor import visitor_id
from engine.config import REPO_ROOT
from engine.db.clickhouse_schema import apply_clickhouse_schema
from engine.naming import CH_CLICKS

pytestmark = pytest.mark.integration

COLUMNS = [
    "event_id",
    "clicked_at",
    "link_id",
    "workspace_id",
    "visitor_id",
    "is_bot",
    "is_preview",
    "country_code",
]
WORKSPACE = str(uuid.uuid4())
LINKS = [str(uuid.uuid4()) for _ in range(3)]
# Relative dates: clicks_analytics has a 2-year TTL, fixed dates would expire one day.
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=20)
CANONICAL = [visitor_id(f"203.0.113.{i}", "UA/1.0", "secret", date(2026, 1, 1)) for i in range(40)]
ODD = [
    "",  # no visitor id: never counted
    "alice",
    "bob",
    CANONICAL[0].upper(),  # another string than CANONICAL[0], so another visitor
    CANONICAL[1][:31],  # 31 hex characters
    CANONICAL[2] + "0",  # 33 hex characters
    "0" * 32,  # a valid id whose 16 bytes are all zero
    "ab",  # unhex('ab') would be one byte, like the last byte of some 32-hex ids
]


def _rows(count: int, seed: int) -> list[list[Any]]:
    rnd = random.Random(seed)
    rows = []
    for _ in range(count):
        visitor = rnd.choice(ODD) if rnd.random() < 0.3 else rnd.choice(CANONICAL)
        rows.append([
            uuid.uuid4().hex, START + timedelta(minutes=rnd.randrange(20 * 24 * 60)), rnd.choice(LINKS),
            WORKSPACE, visitor, int(rnd.random() < 0.2), int(rnd.random() < 0.1), rnd.choice(["US", "DE", ""]),
        ])  # fmt: skip
    return rows


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[Any]:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    yield client
    client.close()


def _compare(client: Any, group_by: str, condition: str) -> list[tuple[Any, ...]]:
    """Per group: (group, uniques via the new columns, uniqExact over the non-empty String ids)."""
    legacy = (
        f"uniqExactIf(visitor_id, ({condition}) AND visitor_id != '')"
        if condition
        else ("uniqExactIf(visitor_id, visitor_id != '')")
    )
    rows = client.query(
        f"SELECT {group_by} AS g, {unique_visitors_sql(condition)}, {legacy} "
        f"FROM {CH_CLICKS} GROUP BY g ORDER BY g"
    ).result_rows
    return [tuple(r) for r in rows]


def _assert_exact(client: Any) -> None:
    groupings = [
        "workspace_id", "link_id", "toDate(clicked_at, 'UTC')", "toDate(clicked_at, 'Asia/Kolkata')",
        "toStartOfHour(clicked_at, 'America/St_Johns')", "country_code", "(link_id, country_code)",
    ]  # fmt: skip
    conditions = ["", "is_bot = 0 AND is_preview = 0", "is_bot = 1", "is_preview = 1"]
    checked = 0
    for group_by in groupings:
        for condition in conditions:
            for group, new, legacy in _compare(client, group_by, condition):
                assert new == legacy, (group_by, condition, group)
                checked += 1
    # The comparison saw real groups with visitors in them.
    assert checked > 100
    total = client.query(f"SELECT {unique_visitors_sql()} FROM {CH_CLICKS}").result_rows[0][0]
    assert total == len(CANONICAL) + len(ODD) - 1  # every id but the empty one


def test_unique_visitors_equal_uniqexact_over_string_ids(ch: Any) -> None:
    apply_clickhouse_schema(ch)
    ch.insert(CH_CLICKS, _rows(3000, seed=1), column_names=COLUMNS)
    ch.insert(CH_CLICKS, _rows(3000, seed=2), column_names=COLUMNS)
    _assert_exact(ch)


def test_visitor_columns_hold_the_id_bytes_or_the_odd_id(ch: Any) -> None:
    apply_clickhouse_schema(ch)
    ids = [CANONICAL[0], "", "alice", "0" * 32, CANONICAL[0].upper()]
    ch.insert(
        CH_CLICKS,
        [[str(i), START, LINKS[0], WORKSPACE, v, 0, 0, "US"] for i, v in enumerate(ids)],
        column_names=COLUMNS,
    )
    rows = ch.query(
        f"SELECT visitor_id, visitor_bits, visitor_other FROM {CH_CLICKS} ORDER BY event_id"
    ).result_rows
    assert [tuple(r) for r in rows] == [
        # reinterpretAsUInt128 reads the 16 bytes little-endian.
        (CANONICAL[0], int.from_bytes(bytes.fromhex(CANONICAL[0]), "little"), ""),
        ("", None, ""),
        ("alice", None, "alice"),
        ("0" * 32, 0, ""),
        (CANONICAL[0].upper(), None, CANONICAL[0].upper()),
    ]


def test_rows_stored_before_the_migration_count_the_same(ch: Any, tmp_path: Path) -> None:
    older = tmp_path / "older"
    older.mkdir()
    for path in (REPO_ROOT / "clickhouse").glob("00000[12]_*.sql"):
        shutil.copy(path, older)
    assert apply_clickhouse_schema(ch, older) == [1, 2]
    ch.insert(CH_CLICKS, _rows(2000, seed=3), column_names=COLUMNS)
    assert apply_clickhouse_schema(ch) == [3, 4, 5]
    ch.insert(CH_CLICKS, _rows(2000, seed=4), column_names=COLUMNS)
    _assert_exact(ch)
