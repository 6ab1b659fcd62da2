"""How `linkrift dev` ends: every child it started (api, worker, tansu broker) goes with it, whether
it is stopped cleanly (SIGINT, as Ctrl-C or a supervisor sends) or killed outright (SIGKILL, what a
supervisor escalates to once its grace period is over)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from cli.procs import free_port, pid_alive
from tests.e2e.helpers import descendants, http_request, spawn_dev, wait_for

pytestmark = pytest.mark.e2e

# A hang detector, not a speed target: a clean stop takes 3-5 s on an idle machine (it should fit
# in Docker's and systemd's 10 s grace period; past it, the parent-death signal still reaps).
STOP_WITHIN_SECONDS = 30


class Output:
    """Everything `linkrift dev` printed so far, read by a thread (its stdout is a pipe)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.chunks: list[bytes] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self.chunks.append(line)

    def text(self, wait: float = 0.0) -> str:
        self._thread.join(wait)
        return b"".join(self.chunks).decode(errors="replace")


@pytest.fixture
def dev(tmp_path: Path, database_url: str) -> Iterator[tuple[subprocess.Popen[bytes], set[int], Output]]:
    """A running `linkrift dev` with its own broker, and the PIDs of every process under it; ready
    once it answers and has printed its whole banner (a signal in the middle of the start is an
    interrupted start, not the clean stop these tests are about)."""
    port = free_port()
    data_dir = tmp_path / "dev"
    proc = spawn_dev(database_url, port, data_dir, partitions=2)
    output = Output(proc)
    children: set[int] = set()
    try:
        healthy = wait_for(
            lambda: (
                (data_dir / "credentials.json").exists()
                and http_request("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200
                and "Press Ctrl-C to stop." in output.text()
            ),
            timeout=90,
        )
        children = descendants(proc.pid)
        assert healthy, "linkrift dev did not become healthy"
        names = {Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children if pid_alive(pid)}
        assert any(b"tansu" in n or b"broker" in n for n in names), names
        assert len(children) >= 3, names  # api, worker and the broker at least
        yield proc, children, output
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in children:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_children_die_when_dev_is_killed(dev: tuple[subprocess.Popen[bytes], set[int], Output]) -> None:
    proc, children, _ = dev
    os.kill(proc.pid, signal.SIGKILL)  # no handler, no atexit: only the kernel can tell the children
    proc.wait()
    leftovers = wait_for(lambda: not any(pid_alive(p) for p in children), timeout=20) or sorted(
        p for p in children if pid_alive(p)
    )
    assert leftovers is True, f"orphans left running after SIGKILL: {leftovers}"


def test_sigint_stops_dev_and_every_child(
    dev: tuple[subprocess.Popen[bytes], set[int], Output],
) -> None:
    proc, children, printed = dev
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    try:
        returncode = proc.wait(timeout=STOP_WITHIN_SECONDS)
    except subprocess.TimeoutExpired:
        returncode = None
    took = time.monotonic() - began
    output = printed.text(wait=5.0) if returncode is not None else ""
    assert returncode == 0, (
        f"linkrift dev still running {STOP_WITHIN_SECONDS} s after SIGINT\n{output[-3000:]}"
    )
    assert [p for p in children if pid_alive(p)] == []
    print(f"\nlinkrift dev clean stop took {took:.1f}s")
    # Its stdout is a pipe here, as in a supervisor's log: the curl hint stays a runnable command.
    hint = output.split("  try: curl", 1)[1].split("Press Ctrl-C", 1)[0].strip().split("\n")
    assert len(hint) > 1 and all(line.endswith(" \\") for line in hint[:-1]), hint
