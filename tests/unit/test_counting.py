"""Exactly-once counting over replays (engine.clicks.counting)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clicks.counting import LinkStats, apply_click, source_key, split_source
from engine.clicks.pg_sink import source_counters


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
    s = LinkStats()
    for offset in range(3):
        s = apply_click(
            s, offset, first_seen_offset=None, is_bot=False, is_preview=False, source=f"qr:{QR}"
        ).stats
    s = apply_click(s, 3, first_seen_offset=None, is_bot=True, is_preview=False).stats  # plain redirect
    assert (s.total, s.sources) == (4, {f"qr:{QR}": 3})
    replay = apply_click(s, 2, first_seen_offset=2, is_bot=False, is_preview=False, source=f"qr:{QR}")
    assert not replay.applied and replay.stats.sources == {f"qr:{QR}": 3}
    before = s.sources
    s = apply_click(s, 4, first_seen_offset=None, is_bot=False, is_preview=False, source=f"bio:{LINK}").stats
    assert s.sources == {f"qr:{QR}": 3, f"bio:{LINK}": 1}
    assert before == {f"qr:{QR}": 3}  # the previous value is not mutated (it may be a table value)


def test_sources_round_trip_and_old_table_values_load() -> None:
    s = apply_click(
        LinkStats(), 9, first_seen_offset=None, is_bot=False, is_preview=False, source=f"qr:{QR}"
    ).stats
    assert LinkStats.from_dict(s.to_dict()) == s and s.to_dict()["sources"] == {f"qr:{QR}": 1}
    # A value written before `sources` existed: loads with no sources, and counts on from there.
    old = {"total": 5, "unique": 2, "humans": 5, "bots": 0, "previews": 0, "variants": {}, "offset": 41,
           "exhausted_emitted": False}  # fmt: skip
    loaded = LinkStats.from_dict(old)
    assert (loaded.total, loaded.offset, loaded.sources) == (5, 41, {})
    after = apply_click(loaded, 42, first_seen_offset=None, is_bot=False, is_preview=False, source=f"qr:{QR}")
    assert (after.stats.total, after.stats.sources) == (6, {f"qr:{QR}": 1})


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
