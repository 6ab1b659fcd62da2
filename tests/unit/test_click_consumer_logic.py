"""Pure pieces of the batch click consumer (streams/agents/click_consumer.py) and its counting helper."""

from __future__ import annotations

import orjson
import pytest

from engine.clicks.models import RawClick
from streams.agents.click_consumer import _Rebalance, resume_offset, well_formed


@pytest.mark.parametrize(
    ("applied", "sunk", "committed", "expected"),
    [
        (None, None, None, None),  # nothing applied: from the beginning
        (None, None, 40, None),  # the tables know nothing: rebuild from the log, whatever the group says
        (9, None, 10, None),  # no batch known to be in the sinks yet: replay everything
        (9, 9, None, 10),  # never committed: after the last sunk offset
        (9, 9, 10, 10),  # the usual case: all agree
        (9, 5, 10, 6),  # the tables are ahead of the sinks: replay that stretch
        (9, 9, 4, 4),  # committed behind (an operator rewinding the group): replay from there
        (9, 9, 25, 10),  # committed ahead of the tables: not trusted, offsets 10..24 are re-read
        (9, 5, 25, 6),  # ... nor ahead of the sinks
    ],
)
def test_resume_offset(
    applied: int | None, sunk: int | None, committed: int | None, expected: int | None
) -> None:
    assert resume_offset(applied, sunk, committed) == expected


def test_raw_click_loads_ignores_unknown_fields_and_rejects_missing_ones() -> None:
    base = {
        "event_id": "e1", "ts": 1.5, "link_id": "00000000-0000-0000-0000-000000000001",
        "workspace_id": "00000000-0000-0000-0000-000000000002", "domain": "d", "short_code": "c",
        "destination": "https://x.test/",
    }  # fmt: skip
    assert RawClick.loads(orjson.dumps(base | {"from_a_newer_version": 1})).event_id == "e1"
    with pytest.raises(TypeError):
        RawClick.loads(orjson.dumps({k: v for k, v in base.items() if k != "link_id"}))


def test_well_formed_checks_ids_even_when_cached() -> None:
    good = RawClick(
        event_id="e", ts=1.0, link_id="aaaaaaaa-0000-0000-0000-000000000001",
        workspace_id="00000000-0000-0000-0000-000000000002", domain="d", short_code="c", destination="x",
    )  # fmt: skip
    assert well_formed(good) and well_formed(good)
    for bad in ({"link_id": "nope"}, {"workspace_id": "00000000-0000-0000-0000-00000000000Z"},
                {"link_id": "aaaaaaaa-0000-0000-0000-000000000001".upper()}, {"ts": "1"}, {"event_id": ""},
                {"link_id": ["list"]}):  # fmt: skip
        copy = RawClick(**{**orjson.loads(good.dumps()), **bad})
        assert not well_formed(copy), bad


async def test_a_failed_assignment_stops_the_consumer_loop_instead_of_leaving_partitions_unowned() -> None:
    class Owner:
        failed: BaseException | None = None

        async def assigned(self, assigned: list[object]) -> None:
            raise TimeoutError("click state recovery did not finish")

    owner = Owner()
    await _Rebalance(owner).on_partitions_assigned([])  # type: ignore[arg-type]
    assert isinstance(owner.failed, TimeoutError)
