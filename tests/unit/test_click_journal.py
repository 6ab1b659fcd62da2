"""The api's click journal: append, rotate, acknowledge, recover after a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.click_journal import ClickJournal, JournalInUse, open_journal


def test_segment_deleted_once_every_click_acknowledged(tmp_path: Path) -> None:
    j = ClickJournal(tmp_path, segment_bytes=50)
    first = j.append(b'{"a":1}' * 4)  # 28 bytes + newline
    second = j.append(b'{"b":2}' * 4)  # crosses 50 bytes: segment rotates after this write
    assert first == second and j.current == first + 1
    assert j.depth() == 2
    j.ack(first, 1)
    assert (tmp_path / f"{first:012d}.jsonl").exists()
    j.ack(first, 1)
    assert not (tmp_path / f"{first:012d}.jsonl").exists()
    assert j.depth() == 0
    j.close()


def test_recovered_segments_are_pending_until_replayed(tmp_path: Path) -> None:
    j = ClickJournal(tmp_path)
    seg = j.append(b'{"n":1}')
    j.append(b'{"n":2}')
    j.sync()
    # Simulate a crash: no close(), the lock goes with the process; here we release it by hand.
    import os

    os.close(j._lock_fd)
    again = ClickJournal(tmp_path)
    assert again.recovered == [seg]
    assert again.closed_pending() == [seg]
    assert again.read(seg) == [b'{"n":1}', b'{"n":2}']
    assert again.depth() == 2
    again.done(seg)
    assert again.closed_pending() == [] and again.depth() == 0
    again.close()


def test_partial_last_line_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "000000000001.jsonl").write_bytes(b'{"ok":1}\n{"trunc')
    j = ClickJournal(tmp_path)
    assert j.read(1) == [b'{"ok":1}']
    j.close()


def test_one_owner_per_directory_and_slots(tmp_path: Path) -> None:
    a = open_journal(tmp_path)
    b = open_journal(tmp_path)
    assert a.directory != b.directory
    with pytest.raises(JournalInUse):
        ClickJournal(a.directory)
    a.close()
    c = open_journal(tmp_path)
    assert c.directory == a.directory
    b.close()
    c.close()


def test_a_recovered_backlog_is_counted_once_and_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """depth() runs every second on the api's event loop: a recovered backlog must not be read
    again each time (a large one stalled every redirect for as long as the read took)."""
    import os

    j = ClickJournal(tmp_path, segment_bytes=20)
    first = j.append(b'{"n":1}')
    j.append(b'{"n":2}')
    j.append(b'{"n":3}')  # three lines of 8 bytes: the segment rotates after the third
    second = j.append(b'{"n":4}')
    j.sync()
    os.close(j._lock_fd)
    again = ClickJournal(tmp_path)
    assert again.recovered == [first, second]
    reads: list[int] = []
    original = again.read
    monkeypatch.setattr(again, "read", lambda s: reads.append(s) or original(s))
    # What fsync_forever does: count in a thread (count_lines reads the files), remember on the loop.
    assert again.uncounted() == [first, second]
    again.remember_counts(again.count_lines(again.uncounted()))
    assert reads == [first, second] and again.uncounted() == []
    assert again.depth() == 4
    assert again.depth() == 4
    assert reads == [first, second]  # depth() read nothing
    again.done(first)
    assert again.depth() == 1
    assert again.uncounted() == []
    again.close()


def test_a_rotated_segment_is_fsynced_before_its_file_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotation happens on the event loop; the segment's last writes still get an fsync, from the
    next sync() (the fsync thread), which then closes the file."""
    import os

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    j = ClickJournal(tmp_path, segment_bytes=10)
    old_fd = j._fd
    j.append(b'{"n":1}')
    j.append(b'{"n":2}')  # over 10 bytes: rotated
    assert j.current == 2
    os.fstat(old_fd)  # still open: rotate() neither fsyncs nor closes on the loop
    assert synced == []
    j.sync()
    assert old_fd in synced
    with pytest.raises(OSError):
        os.fstat(old_fd)  # closed once fsynced
    j.close()
