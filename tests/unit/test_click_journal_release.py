"""ClickJournal keeps acknowledged clicks until the click consumer group committed past them in the
same incarnation of clicks.raw (`release`); another incarnation marks them to be sent again."""

from __future__ import annotations

from pathlib import Path

from api.click_journal import ClickJournal


def _journal(tmp_path: Path, lines: int) -> tuple[ClickJournal, int]:
    journal = ClickJournal(tmp_path / "j")
    segment = 0
    for i in range(lines):
        segment = journal.append(b'{"n": %d}' % i)
    return journal, segment


def test_acknowledged_clicks_stay_until_committed_past(tmp_path: Path) -> None:
    journal, segment = _journal(tmp_path, 4)
    journal.ack(segment, 4, offsets={0: 10, 1: 3}, incarnation="A")
    assert journal.held() == 1 and journal.depth() == 0
    assert journal.release("A", {0: 11, 1: 3}) is False  # partition 1 committed up to 2 only
    assert journal.held() == 1 and journal.read(segment)
    assert journal.release("A", {0: 11, 1: 4}) is False
    assert journal.held() == 0
    assert journal.read(segment) == []  # the segment is gone (the current one was rotated away)
    journal.close()


def test_clicks_acknowledged_by_a_lost_incarnation_are_sent_again(tmp_path: Path) -> None:
    journal, segment = _journal(tmp_path, 3)
    journal.ack(segment, 3, offsets={0: 2}, incarnation="A")
    assert journal.release("B", {0: 100}) is True  # a high offset of another topic means nothing
    assert journal.held() == 0
    assert journal.closed_pending() == [segment]  # closed, to be replayed whole
    assert len(journal.read(segment)) == 3
    journal.append(b'{"n": 99}')  # new clicks go to a new segment, not into the replayed one
    assert journal.closed_pending() == [segment]
    journal.done(segment, offsets={0: 4}, incarnation="B")
    assert journal.held() == 1
    assert journal.release("B", {0: 5}) is False and journal.held() == 0
    journal.close()


def test_acks_before_any_topic_id_was_known_belong_to_the_first_one_seen(tmp_path: Path) -> None:
    journal, segment = _journal(tmp_path, 2)
    journal.ack(segment, 2, offsets={0: 1}, incarnation="")
    assert journal.release("A", {}) is False  # adopted by A, not resent
    assert journal.held() == 1
    assert journal.release("A", {0: 2}) is False and journal.held() == 0
    journal.close()


def test_acks_without_offsets_release_on_acknowledgement(tmp_path: Path) -> None:
    """Without a consumer group (no offsets passed), a segment goes when the broker has it all."""
    journal, segment = _journal(tmp_path, 2)
    closed = journal.rotate()
    assert closed == segment
    journal.ack(segment, 2)
    assert journal.held() == 0 and journal.read(segment) == []
    journal.close()
