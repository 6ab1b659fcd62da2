"""Pure helpers of the analytics pages: chart series, percentages that never claim certainty."""

from __future__ import annotations

from datetime import UTC, datetime

from web.analytics import _series, chance, percent


def test_series_turns_buckets_into_epoch_seconds_in_the_report_zone() -> None:
    days = {
        "interval": "day",
        "tz": "Asia/Tokyo",
        "clicks_by_day": [
            {"t": "2026-03-01", "clicks": 3, "unique_visitors": 2},
            {"t": "2026-03-02", "clicks": 0, "unique_visitors": 0},
        ],
    }
    series = _series(days)
    midnight_tokyo = int(datetime(2026, 2, 28, 15, tzinfo=UTC).timestamp())
    assert series["x"] == [midnight_tokyo, midnight_tokyo + 86400]
    assert (series["clicks"], series["visitors"], series["tz"]) == ([3, 0], [2, 0], "Asia/Tokyo")
    hours = {
        "interval": "hour",
        "tz": "Asia/Kolkata",
        "clicks_by_hour": [{"t": "2026-03-01T19:00:00+05:30", "clicks": 1, "unique_visitors": 1}],
    }
    assert _series(hours)["x"] == [int(datetime(2026, 3, 1, 13, 30, tzinfo=UTC).timestamp())]


def test_probabilities_are_never_shown_as_certain() -> None:
    assert (chance(1.0), chance(0.99951), chance(0.0), chance(0.0004)) == (
        ">99.9%",
        ">99.9%",
        "<0.1%",
        "<0.1%",
    )
    assert (chance(0.973), percent(1.0), percent(0.4512)) == ("97.3%", "100.0%", "45.1%")
