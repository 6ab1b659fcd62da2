"""Analytics parameter validation and bucket zero-filling: pure functions, no servers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.analytics.queries import parse_int, parse_limit, parse_window
from engine.errors import ValidationFailed


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"interval": "week"}, "interval"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"from": "2026-01-02", "to": "2026-01-01"}, "from"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "from"),
        ({"from": "2026-01-01", "to": "2026-06-01", "interval": "hour"}, "interval"),
    ],
)
def test_bad_window_names_the_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_window(params)
    assert err.value.field == field


@pytest.mark.parametrize("value", ["0", "101", "ten", "-1", "1.5"])
def test_bad_limit(value: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_limit(value)
    assert err.value.field == "limit"


def test_limit_and_int_defaults() -> None:
    assert parse_limit(None) == 10 and parse_limit("100") == 100
    assert parse_int("", "max_rows", 7, 1, 9) == 7


def test_naive_times_are_wall_times_in_tz() -> None:
    w = parse_window({"from": "2026-03-01", "to": "2026-03-03T00:00:00", "tz": "Asia/Tokyo"})
    assert w.start == datetime(2026, 2, 28, 15, tzinfo=UTC)
    assert w.end == datetime(2026, 3, 2, 15, tzinfo=UTC)
    assert w.buckets() == ["2026-03-01", "2026-03-02"]
    # An explicit offset wins over tz.
    w = parse_window({"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "tz": "Asia/Tokyo"})
    assert w.buckets() == ["2026-03-01", "2026-03-02"]  # 09:00 JST on the 1st to 09:00 on the 2nd


def test_default_from_is_clamped_to_to() -> None:
    created = datetime(2026, 5, 1, tzinfo=UTC)
    w = parse_window({"to": "2026-04-01T00:00:00Z"}, default_from=created)
    assert w.start == w.end and w.buckets() == []


def test_hour_buckets_half_hour_zone_and_dst() -> None:
    w = parse_window(
        {
            "from": "2026-01-05T14:00:00Z",
            "to": "2026-01-05T15:00:00Z",
            "interval": "hour",
            "tz": "Asia/Kolkata",
        }
    )
    assert w.buckets() == ["2026-01-05T19:00:00+05:30", "2026-01-05T20:00:00+05:30"]
    # New York falls back on 2026-11-01: the local 01:00 hour happens twice, both are buckets.
    w = parse_window(
        {
            "from": "2026-11-01T04:00:00Z",
            "to": "2026-11-01T08:00:00Z",
            "interval": "hour",
            "tz": "America/New_York",
        }
    )
    assert w.buckets() == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
