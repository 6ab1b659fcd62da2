"""The page's rollups (ClickHouse migration 000004) give exactly what the raw clicks give, on chDB.

`analytics_overview` of a link reads `click_counts_hourly` and `link_visitor_hours` when its window
is whole UTC hours (`rollup_buckets`), else the raw rows. Both answers must be identical for every
window, zone and bucket size: unique visitors over several days with visitors coming back on
other days and in other insert batches (a sum of per-day or per-batch uniques would be too high),
empty and odd ids, bots and previews, rows backfilled by the migration, rows added by the views
in several unmerged parts, and after the parts are merged.
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from engine.analytics.queries import (
    _bucket_sql,
    analytics_overview,
    link_ab_variants,
    parse_window,
    rollup_buckets,
)
from engine.config import REPO_ROOT
from engine.db.clickhouse_schema import apply_clickhouse_schema
from engine.naming import (
    CH_CLICKS,
    CH_COUNTS_DAILY,
    CH_COUNTS_HOURLY,
    CH_VARIANT_VISITOR_HOURS,
    CH_VISITOR_HOURS,
)

pytestmark = pytest.mark.integration

COLUMNS = [
    "event_id", "clicked_at", "link_id", "workspace_id", "visitor_id", "is_bot", "is_preview",
    "country_code", "device_type", "browser", "os", "referer_domain", "city", "utm_source",
    "rule_id", "variant",
]  # fmt: skip
# A/B arms: no rule, two variants of one rule, one of another.
ARMS = [("", ""), ("r1", "a"), ("r1", "b"), ("r2", "x")]
WORKSPACE = str(uuid.uuid4())
OTHER_WORKSPACE = str(uuid.uuid4())
LINK, OTHER_LINK = str(uuid.uuid4()), str(uuid.uuid4())
# Relative dates (clicks_analytics has a 2-year TTL); the clicks span the 12 days before the
# current hour, so windows up to "now" cover them.
NOW_HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = NOW_HOUR - timedelta(days=12)
VISITORS = [uuid.uuid4().hex for _ in range(60)] + ["", "alice", "A" * 32]


def _rows(count: int, seed: int) -> list[list[Any]]:
    rnd = random.Random(seed)
    rows = []
    for _ in range(count):
        link, workspace = (LINK, WORKSPACE) if rnd.random() < 0.8 else (OTHER_LINK, OTHER_WORKSPACE)
        rows.append([
            uuid.uuid4().hex, START + timedelta(seconds=rnd.randrange(12 * 86400)), link, workspace,
            rnd.choice(VISITORS), int(rnd.random() < 0.15), int(rnd.random() < 0.1),
            rnd.choice(["US", "DE", "FR", ""]), rnd.choice(["mobile", "desktop"]),
            rnd.choice(["Chrome", "Firefox", "Édge"]), rnd.choice(["iOS", "Linux"]),
            rnd.choice(["t.co", "", "news.example"]), rnd.choice(["Berlin", "Zürich", ""]),
            rnd.choice(["mail", ""]), *rnd.choice(ARMS),
        ])  # fmt: skip
    return rows


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[Any]:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    yield client
    client.close()


def _windows() -> list[dict[str, Any]]:
    day = timedelta(days=1)
    return [
        {"from": (NOW_HOUR - 13 * day).isoformat(), "to": (NOW_HOUR + timedelta(hours=1)).isoformat()},
        {"from": (NOW_HOUR - 30 * day).isoformat(), "to": (NOW_HOUR + timedelta(hours=1)).isoformat(),
         "tz": "America/New_York"},
        {"from": (START + 2 * day + timedelta(hours=5)).isoformat(), "to": (START + 9 * day).isoformat(),
         "tz": "Europe/Paris"},
        {"from": (START + 3 * day).isoformat(), "to": (START + 5 * day).isoformat(), "interval": "hour",
         "tz": "America/Los_Angeles"},
        {"from": (START + 4 * day).isoformat(), "to": (START + 4 * day + timedelta(hours=7)).isoformat(),
         "interval": "hour"},
    ]  # fmt: skip


def _assert_rollups_equal_raw(client: Any, limits: tuple[int, ...] = (2, 10)) -> None:
    for window in _windows():
        for limit in limits:
            params = {"interval": "day", "tz": "UTC", **window, "workspace_id": WORKSPACE, "link_id": LINK}
            params["limit"] = limit
            assert rollup_buckets(parse_window(params)) is not None, window
            rolled = analytics_overview(client, params)
            raw = analytics_overview(client, {**params, "rollups": False})
            assert rolled == raw, (window, limit)
        # The A/B counts: clicks, visitors and returning visitors (2+ clicks in the window) per arm.
        ab_params = {"tz": "UTC", **window, "workspace_id": WORKSPACE, "link_id": LINK}
        ab = link_ab_variants(client, ab_params)
        assert ab == link_ab_variants(client, {**ab_params, "rollups": False}), window
        assert {(v["rule_id"], v["variant"]) for v in ab["variants"]} <= set(ARMS[1:])
    # The other link's clicks are in neither of this link's answers, and its own answers agree.
    params = {**_windows()[0], "workspace_id": OTHER_WORKSPACE, "link_id": OTHER_LINK}
    assert analytics_overview(client, params) == analytics_overview(client, {**params, "rollups": False})


def _raw_uniques(client: Any, start: datetime, end: datetime) -> tuple[int, int]:
    """(exact visitors of the link in [start, end), the sum of its per-UTC-day visitors)."""
    exact, per_day = client.query(
        f"""SELECT uniqExactIf(visitor_id, visitor_id != ''),
                   (SELECT sum(u) FROM (SELECT uniqExactIf(visitor_id, visitor_id != '') AS u
                    FROM {CH_CLICKS} WHERE link_id = {{link:UUID}} AND clicked_at >= {{s:DateTime64(3, 'UTC')}}
                      AND clicked_at < {{e:DateTime64(3, 'UTC')}} GROUP BY toDate(clicked_at)))
            FROM {CH_CLICKS} WHERE link_id = {{link:UUID}} AND clicked_at >= {{s:DateTime64(3, 'UTC')}}
              AND clicked_at < {{e:DateTime64(3, 'UTC')}}""",
        parameters={"link": LINK, "s": start, "e": end},
    ).result_rows[0]
    return int(exact), int(per_day)


def test_rollups_equal_the_raw_clicks(ch: Any, tmp_path: Path) -> None:
    # Clicks stored before migration 000004 reach the rollups through its backfill.
    older = tmp_path / "older"
    older.mkdir()
    for path in (REPO_ROOT / "clickhouse").glob("00000[123]_*.sql"):
        shutil.copy(path, older)
    assert apply_clickhouse_schema(ch, older) == [1, 2, 3]
    ch.insert(CH_CLICKS, _rows(1500, seed=1), column_names=COLUMNS)
    assert apply_clickhouse_schema(ch) == [4, 5]
    assert apply_clickhouse_schema(ch) == []
    # Later clicks through the materialized views, one part per insert, the same visitors again.
    for seed in (2, 3, 4):
        ch.insert(CH_CLICKS, _rows(700, seed=seed), column_names=COLUMNS)
    assert ch.command(f"SELECT count() FROM system.parts WHERE active AND table = '{CH_VISITOR_HOURS}'") > 1

    # Visitors come back on other days: a sum of per-day uniques would overcount.
    start, end = NOW_HOUR - timedelta(days=13), NOW_HOUR + timedelta(hours=1)
    exact, per_day = _raw_uniques(ch, start, end)
    assert per_day > 5 * exact
    params = {"from": start.isoformat(), "to": end.isoformat(), "workspace_id": WORKSPACE, "link_id": LINK}
    report = analytics_overview(ch, params)
    assert report["unique_visitors"] == exact == len([v for v in VISITORS if v])
    assert report["clicks"] == ch.command(f"SELECT count() FROM {CH_CLICKS} WHERE link_id = '{LINK}'")
    _assert_rollups_equal_raw(ch)
    # Returning visitors of an arm count each visitor's clicks in the window across inserts and
    # hours: some come back, and not every visitor does in a short window.
    full = link_ab_variants(ch, params)["variants"]
    assert [(v["rule_id"], v["variant"]) for v in full] == [("r1", "a"), ("r1", "b"), ("r2", "x")]
    assert all(v["unique_visitors"] >= v["returning_visitors"] > 0 for v in full)
    assert sum(v["clicks"] for v in full) == ch.command(
        f"SELECT count() FROM {CH_CLICKS} WHERE link_id = '{LINK}' AND variant != '' AND is_bot = 0 AND is_preview = 0"
    )
    short = {
        "from": (START + 4 * timedelta(days=1)).isoformat(),
        "to": (START + timedelta(days=4, hours=3)).isoformat(),
    }
    one = link_ab_variants(ch, {**short, "workspace_id": WORKSPACE, "link_id": LINK})
    assert one == link_ab_variants(
        ch, {**short, "workspace_id": WORKSPACE, "link_id": LINK, "rollups": False}
    )
    assert any(v["unique_visitors"] > v["returning_visitors"] for v in one["variants"]), one

    # Merged parts give the same answers.
    for table in (CH_CLICKS, CH_COUNTS_HOURLY, CH_VISITOR_HOURS, CH_COUNTS_DAILY, CH_VARIANT_VISITOR_HOURS):
        ch.command(f"OPTIMIZE TABLE {table} FINAL")
    _assert_rollups_equal_raw(ch, limits=(3,))


def test_windows_the_rollups_cannot_cut_read_raw_rows() -> None:
    hour = NOW_HOUR.isoformat()
    base = {"to": (NOW_HOUR + timedelta(hours=1)).isoformat()}
    assert rollup_buckets(parse_window({**base, "from": hour})) is not None
    # A window that does not start or end on a whole hour.
    assert (
        rollup_buckets(parse_window({**base, "from": (NOW_HOUR + timedelta(minutes=5)).isoformat()})) is None
    )
    assert (
        rollup_buckets(parse_window({"from": hour, "to": (NOW_HOUR + timedelta(minutes=30)).isoformat()}))
        is None
    )
    # A zone whose days start at :30 UTC cuts the hours into two buckets.
    assert rollup_buckets(parse_window({**base, "from": hour, "tz": "Asia/Kolkata"})) is None
    # Beyond the raw table's TTL the rollups are not used.
    old = (NOW_HOUR - timedelta(days=800)).isoformat()
    assert (
        rollup_buckets(parse_window({"from": old, "to": (NOW_HOUR - timedelta(days=700)).isoformat()}))
        is None
    )
    # Day buckets of a whole-hour zone across a DST change: 23- and 25-hour days, every hour in one.
    paris = {"from": "2026-03-01T00:00:00+01:00", "to": "2026-04-05T00:00:00+02:00", "tz": "Europe/Paris"}
    window = parse_window(paris)
    found = rollup_buckets(window, now=datetime(2026, 4, 6, tzinfo=UTC))
    assert found is not None
    first, last, buckets = found
    assert len(buckets) == last - first and buckets == sorted(buckets)
    # Bucket 29 is 29 March 2026, the day the clocks go forward.
    assert (buckets.count(28), buckets.count(29), buckets.count(30), max(buckets)) == (24, 23, 24, 35)
    # The SQL form of the buckets follows the offset change (and was checked against the list).
    expression = _bucket_sql(window, first, buckets)
    assert expression is not None and "multiIf" in expression
