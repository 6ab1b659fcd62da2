"""Exactly-once counting over replays (engine.clicks.counting)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clicks.counting import LinkStats, apply_click


def test_counts_and_classes() -> None:
    s = LinkStats()
    s = apply_click(s, 0, first_seen_offset=None, is_bot=False, is_preview=False, variant="a").stats
    s = apply_click(s, 1, first_seen_offset=0, is_bot=False, is_preview=False, variant="b").stats
    s = apply_click(s, 2, first_seen_offset=None, is_bot=True, is_preview=False).stats
    s = apply_click(s, 3, first_seen_offset=None, is_bot=False, is_preview=True).stats
    assert (s.total, s.unique, s.humans, s.bots, s.previews) == (4, 3, 2, 1, 1)
    assert s.variants == {"a": 1, "b": 1}
    assert s.offset == 3


def test_replayed_offset_is_not_counted_again() -> None:
    s = apply_click(LinkStats(), 5, first_seen_offset=None, is_bot=False, is_preview=False).stats
    again = apply_click(s, 5, first_seen_offset=5, is_bot=False, is_preview=False)
    assert not again.applied and again.stats is s and again.is_unique
    older = apply_click(s, 4, first_seen_offset=None, is_bot=False, is_preview=False)
    assert not older.applied and older.stats.total == 1


def test_round_trip_through_table_value() -> None:
    s = apply_click(LinkStats(), 7, first_seen_offset=None, is_bot=False, is_preview=False, variant="x").stats
    assert LinkStats.from_dict(s.to_dict()) == s
    assert LinkStats.from_dict(None) == LinkStats()


@settings(max_examples=60, deadline=None)
@given(
    visitors=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    crash_points=st.lists(st.integers(0, 40), max_size=4),
)
def test_replays_after_crashes_count_each_click_once(visitors: list[int], crash_points: list[int]) -> None:
    """Simulate a consumer that crashes and re-reads from an older offset, with table state
    written at arbitrary points: the final counts equal a single clean pass."""
    stats = LinkStats()
    first_seen: dict[int, int] = {}
    offset = 0
    crashes = sorted(set(crash_points))
    while offset < len(visitors):
        visitor = visitors[offset]
        result = apply_click(
            stats, offset, first_seen_offset=first_seen.get(visitor), is_bot=False, is_preview=False
        )
        if result.applied and visitor not in first_seen:
            first_seen[visitor] = offset
        stats = result.stats
        if crashes and offset == crashes[0]:
            crashes.pop(0)
            offset = max(0, offset - 3)  # re-delivery of the last uncommitted events
            continue
        offset += 1
    assert stats.total == len(visitors)
    assert stats.unique == len(set(visitors))
