"""Pure parts of link changes: which cache entries a change makes stale (the link-change agent)
and when a max_clicks change un-exhausts a link."""

from __future__ import annotations

from engine.links.service import _cap_raised
from streams.agents.links import invalidation_targets


def test_a_plain_change_invalidates_its_own_code() -> None:
    change = {"event": "updated", "short_code": "abc", "domain_id": ""}
    assert invalidation_targets(change) == [("abc", "")]


def test_a_code_change_also_invalidates_the_old_code() -> None:
    change = {"short_code": "new", "domain_id": "", "old_short_code": "old", "old_domain_id": ""}
    assert invalidation_targets(change) == [("new", ""), ("old", "")]


def test_a_domain_move_invalidates_the_code_on_the_old_domain() -> None:
    change = {"short_code": "abc", "domain_id": "d2", "old_short_code": "abc", "old_domain_id": "d1"}
    assert invalidation_targets(change) == [("abc", "d2"), ("abc", "d1")]
    # Back to the default domain: the old key is the custom domain's.
    change = {"short_code": "abc", "domain_id": "", "old_short_code": "abc", "old_domain_id": "d1"}
    assert invalidation_targets(change) == [("abc", ""), ("abc", "d1")]


def test_missing_codes_are_skipped() -> None:
    assert invalidation_targets({"event": "rules"}) == []


def test_cap_raised() -> None:
    assert _cap_raised(100, 150) and _cap_raised(100, None) and _cap_raised(None, 5)
    assert not _cap_raised(100, 100) and not _cap_raised(100, 50)
