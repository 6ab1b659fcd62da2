"""Child-process helpers for the services `linkrift dev` and the tests start: ports and process groups.

Every child runs in its own session (process group), so stopping it stops its whole tree; all live
children are also stopped at interpreter exit or on SIGTERM. A parent that gets no chance to clean up
(SIGKILL, a supervisor escalating after its grace period, the OOM killer) still leaves no orphans:
each child asks the kernel for its stop signal when its parent dies (Linux `PR_SET_PDEATHSIG`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

log = logging.getLogger("linkrift.procs")

LOOPBACK = "127.0.0.1"


class ServiceStartError(RuntimeError):
    """A backing service did not start or did not become ready in time; the message carries its log tail."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on `host` a moment ago (the OS picks it; bind 127.0.0.1:0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, *, proc: ManagedProcess | None = None) -> None:
    """Block until host:port accepts connections; fail early if `proc` (the server) has exited."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if proc is not None and not proc.alive:
            raise ServiceStartError(f"{proc.name} exited with {proc.returncode}:\n{proc.log_tail()}")
        if time.monotonic() >= deadline:
            raise ServiceStartError(f"{host}:{port} not accepting connections after {timeout:.1f}s")
        time.sleep(0.02)


async def async_wait_for_port(
    host: str, port: int, within: float, *, proc: ManagedProcess | None = None
) -> None:
    """`wait_for_port` without blocking the event loop; gives up after `within` seconds."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(port_open, host, port):
        if proc is not None and not proc.alive:
            raise ServiceStartError(f"{proc.name} exited with {proc.returncode}:\n{proc.log_tail()}")
        if time.monotonic() >= deadline:
            raise ServiceStartError(f"{host}:{port} not accepting connections after {within:.1f}s")
        await asyncio.sleep(0.02)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) PIDs in process group `pgid`, read from /proc.

    Zombies count as gone: orphans reparented to a PID 1 that never reaps them stay zombies forever.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def pid_alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in ("Z", "X")


_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent (the child between fork and exec must not load
    libraries); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl: Callable[..., int] = libc.prctl
    return prctl


def die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when the thread that forked it ends.

    Why PR_SET_PDEATHSIG rather than a watchdog pipe: the kernel delivers it however the parent
    ends (a pipe needs a cooperating reader in every child, and tansu or postgres are not ours), and
    it costs no extra process. The signal fires when the forking *thread* exits, so callers only
    use it from the main thread, which lives as long as the process (see `ManagedProcess.start`).
    It runs after Popen's setuid/setgid (a credential change would clear it), and a parent that died
    before the prctl is caught by comparing getppid() with the pid it had at fork time.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0 or os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


class ManagedProcess:
    """A child process in its own process group, logging to `<log_dir>/<name>.log`.

    `stop()` signals the whole group (SIGTERM by default), waits, then SIGKILLs what is left.
    `user`/`group` drop privileges in the child (used to run PostgreSQL as a non-root user).
    Started from the main thread, the child also gets `stop_signal` when this process dies.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        user: str | int | None = None,
        group: str | int | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.user = user
        self.group = group
        self._popen: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None

    def start(self) -> Self:
        if self.alive:
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # From another thread the death signal would fire when that thread ends, not the process.
        on_main_thread = threading.current_thread() is threading.main_thread()
        preexec = die_with_parent(self.stop_signal) if on_main_thread else None
        with self.log_path.open("ab") as logfile:
            self._popen = subprocess.Popen(  # noqa: S603 - argv is built by our own code
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                user=self.user,
                group=self.group,
                preexec_fn=preexec,  # a single prctl call: takes no lock another thread may hold
            )
        # start_new_session makes the child a session and group leader: its pgid is its pid.
        self._pgid = self._popen.pid
        _register(self)
        log.info("process_started name=%s pid=%d log=%s", self.name, self._popen.pid, self.log_path)
        return self

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the leader to exit; its return code, or None on timeout."""
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._pgid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, sig)

    def _group_empty(self) -> bool:
        return self._pgid is None or not group_members(self._pgid)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Signal the process group, wait up to `timeout` for all of it to exit, then SIGKILL it."""
        if self._popen is None:
            return None
        deadline = time.monotonic() + timeout
        if not self._group_empty():
            self._signal_group(self.stop_signal)
        self.wait(max(0.0, deadline - time.monotonic()))
        while not self._group_empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.alive or not self._group_empty():
            log.warning("process_stop_timeout name=%s pid=%s timeout=%.1f", self.name, self.pid, timeout)
            self._signal_group(signal.SIGKILL)
        rc = self.wait(5.0)
        _unregister(self)
        log.info("process_stopped name=%s pid=%s returncode=%s", self.name, self.pid, rc)
        return rc

    def kill(self) -> None:
        """SIGKILL the whole group without waiting for a clean shutdown (fault tests)."""
        self._signal_group(signal.SIGKILL)
        self.wait(5.0)
        _unregister(self)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self if self.alive else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ManagedProcess(name={self.name!r}, pid={self.pid}, alive={self.alive})"


_live: dict[int, ManagedProcess] = {}
_live_lock = threading.Lock()
_hooks_installed = False


def _register(proc: ManagedProcess) -> None:
    global _hooks_installed
    with _live_lock:
        _live[id(proc)] = proc
        if not _hooks_installed:
            _hooks_installed = True
            atexit.register(stop_all)
            _install_sigterm_handler()


def _unregister(proc: ManagedProcess) -> None:
    with _live_lock:
        _live.pop(id(proc), None)


def stop_all(timeout: float = 5.0) -> None:
    """Stop every live ManagedProcess, newest first (runs at exit and on SIGTERM)."""
    with _live_lock:
        procs = list(_live.values())
    for proc in reversed(procs):
        proc.stop(timeout)


def _install_sigterm_handler() -> None:
    # Only where nobody else handles SIGTERM: asyncio apps (faust, aiohttp) install their own
    # handlers and exit normally, and then atexit does the cleanup.
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
