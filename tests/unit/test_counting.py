"""Exactly-once counting over replays (engine.clicks.counting)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clicks.counting import LinkStats, count_click, source_key, split_source
from engine.clicks.pg_sink import source_counters


def _counted(*clicks: tuple[int, dict[str, Any]]) -> LinkStats:
    """A fresh LinkStats with each (offset, count_click keywords) applied in order."""
    stats = LinkStats()
    for offset, kwargs in clicks:
        count_click(stats, offset, **{"is_unique": True, "is_bot": False, "is_preview": False, **kwargs})
    return stats


def test_counts_and_classes() -> None:
    s = _counted(
        (0, {"variant": "a"}),
        (1, {"is_unique": False, "variant": "b"}),
        (2, {"is_bot": True}),
        (3, {"is_preview": True}),
    )
    assert (s.total, s.unique, s.humans, s.bots, s.previews) == (4, 3, 2, 1, 1)
    assert s.variants == {"a": 1, "b": 1}
    assert s.offset == 3


def test_replayed_offset_is_not_counted_again() -> None:
    s = _counted((5, {}))
    before = s.to_dict()
    assert not count_click(s, 5, is_unique=True, is_bot=False, is_preview=False)
    assert not count_click(s, 4, is_unique=True, is_bot=False, is_preview=False)
    assert s.to_dict() == before and s.total == 1
    assert count_click(s, 6, is_unique=False, is_bot=False, is_preview=False)
    assert (s.total, s.unique, s.offset) == (2, 1, 6)


def test_round_trip_through_table_value() -> None:
    s = _counted((7, {"variant": "x"}))
    assert LinkStats.from_dict(s.to_dict()) == s
    assert LinkStats.from_dict(None) == LinkStats()


@settings(max_examples=60, deadline=None)
@given(
    visitors=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    crash_points=st.lists(st.integers(0, 40), max_size=4),
)
def test_replays_after_crashes_count_each_click_once(visitors: list[int], crash_points: list[int]) -> None:
    """Simulate a consumer that crashes and re-reads from an older offset, with table state
    written at arbitrary points: the final counts equal a single clean pass. A visitor is unique
    at the offset of its first click (as the worker's visitor store remembers it)."""
    stats = LinkStats()
    first_seen: dict[int, int] = {}
    offset = 0
    crashes = sorted(set(crash_points))
    while offset < len(visitors):
        visitor = visitors[offset]
        is_unique = first_seen.get(visitor, offset) == offset
        if count_click(stats, offset, is_unique=is_unique, is_bot=False, is_preview=False):
            first_seen.setdefault(visitor, offset)
        if crashes and offset == crashes[0]:
            crashes.pop(0)
            offset = max(0, offset - 3)  # re-delivery of the last uncommitted events
            continue
        offset += 1
    assert stats.total == len(visitors)
    assert stats.unique == len(set(visitors))


QR = "0b5c5e8e-7a1c-4c0e-9f5e-2f8a1f9d6a01"
LINK = "5d2b9f7e-1c3a-4e6b-8d0f-3a2c1b4e5f60"


def test_source_key_follows_the_click_kind() -> None:
    assert source_key("qr", QR, "") == f"qr:{QR}"
    assert source_key("bio", "", LINK) == f"bio:{LINK}"
    assert source_key("redirect", QR, LINK) == ""  # an id without its kind is not a source
    assert source_key("qr", "", LINK) == "" and source_key("bio", QR, "") == ""
    assert split_source(f"qr:{QR}") == ("qr", QR) and split_source(f"bio:{LINK}") == ("bio", LINK)
    assert split_source("ab:x") == ("", "") and split_source("qr:") == ("", "")


def test_sources_are_counted_when_applied_and_not_on_replay() -> None:
    s = _counted(*[(offset, {"source": f"qr:{QR}"}) for offset in range(3)], (3, {"is_bot": True}))
    assert (s.total, s.sources) == (4, {f"qr:{QR}": 3})
    assert not count_click(s, 2, is_unique=False, is_bot=False, is_preview=False, source=f"qr:{QR}")
    assert s.sources == {f"qr:{QR}": 3}
    count_click(s, 4, is_unique=True, is_bot=False, is_preview=False, source=f"bio:{LINK}")
    assert s.sources == {f"qr:{QR}": 3, f"bio:{LINK}": 1}


def test_sources_round_trip_and_old_table_values_load() -> None:
    s = _counted((9, {"source": f"qr:{QR}"}))
    assert LinkStats.from_dict(s.to_dict()) == s and s.to_dict()["sources"] == {f"qr:{QR}": 1}
    # A value written before `sources` existed: loads with no sources, and counts on from there.
    old = {"total": 5, "unique": 2, "humans": 5, "bots": 0, "previews": 0, "variants": {}, "offset": 41,
           "exhausted_emitted": False}  # fmt: skip
    loaded = LinkStats.from_dict(old)
    assert (loaded.total, loaded.offset, loaded.sources) == (5, 41, {})
    assert count_click(loaded, 42, is_unique=True, is_bot=False, is_preview=False, source=f"qr:{QR}")
    assert (loaded.total, loaded.sources) == (6, {f"qr:{QR}": 1})


def test_source_counters_skip_ids_that_are_not_uuids() -> None:
    other = "9e8d7c6b-5a49-4382-b1c0-d9e8f7a6b5c4"
    stats = {
        LINK: LinkStats(sources={f"qr:{QR}": 4, "qr:not-a-uuid": 2, "bio:x": 1, "weird": 3}),
        other: LinkStats(sources={f"bio:{other}": 7, f"bio:{LINK}": 1}),  # only its own button counts
        "not-a-link-id": LinkStats(sources={f"qr:{QR}": 9}),
    }
    qr, bio = source_counters(stats)
    assert qr == [(QR, LINK, 4)]
    assert bio == [(other, 7)]
    upper = {LINK.upper(): LinkStats(sources={f"qr:{QR.upper()}": 1})}
    assert source_counters(upper) == ([(QR, LINK, 1)], [])  # canonical (lower-case) ids
