"""`linkrift dev` restarts a crashed worker or api with backoff and reports a crash loop."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from cli.dev import RestartPolicy, _supervise
from cli.procs import ManagedProcess


def test_backoff_doubles_up_to_the_cap_and_gives_up_on_a_crash_loop() -> None:
    policy = RestartPolicy(limit=6, window=100.0, max_delay=4.0)
    delays = [policy.next_delay("worker", float(t)) for t in range(6)]
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert policy.next_delay("worker", 6.0) is None
    assert policy.next_delay("api", 6.0) == 1.0  # counted per child


def test_old_crashes_fall_out_of_the_window() -> None:
    policy = RestartPolicy(limit=2, window=10.0)
    assert policy.next_delay("worker", 0.0) == 1.0
    assert policy.next_delay("worker", 1.0) == 2.0
    assert policy.next_delay("worker", 20.0) == 1.0  # the first two are older than the window


def test_supervisor_restarts_a_crashed_child_then_stops_on_a_crash_loop(tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    script = f"open({str(marker)!r}, 'a').write('x'); raise SystemExit(3)"
    proc = ManagedProcess("crashy", [sys.executable, "-c", script], log_dir=tmp_path)
    proc.start()
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        assert _supervise([proc], RestartPolicy(limit=2, window=60.0, max_delay=0.5)) == 1
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
        proc.stop(timeout=2)
    assert marker.read_text() == "xxx"  # started, restarted twice, then given up
