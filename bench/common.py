"""What the end-to-end benchmarks share: a throwaway PG database, a Redis namespace, tansu, child
processes stopped by PID, a principal with an API key, wrk and py-spy wrappers.

Everything binds or talks to 127.0.0.1; every process started here is a ManagedProcess (own
process group, stopped by PID at the end or at interpreter exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from cli.procs import ManagedProcess, free_port
from cli.services import TansuBroker

REPO = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("LINKRIFT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("LINKRIFT_BENCH_REDIS", "redis://127.0.0.1:6379/0")
LINKRIFT = str(REPO / ".venv" / "bin" / "linkrift")
PY_SPY = shutil.which("py-spy") or str(REPO / ".venv" / "bin" / "py-spy")


def pg_url(database: str) -> str:
    return f"{PG_SERVER}/{database}"


@contextlib.asynccontextmanager
async def bench_database(*, migrate: bool = True) -> AsyncIterator[str]:
    """A fresh `lr_bench_<hex>` database (migrated), dropped on exit."""
    from engine.db.migrate import Migrator

    name = f"lr_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        if migrate:
            await Migrator(pg_url(name)).up()
        yield pg_url(name)
    finally:
        admin = await asyncpg.connect(pg_url("postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def redis_namespace() -> AsyncIterator[tuple[str, aioredis.Redis]]:
    """A unique namespace and a client; every key under it is deleted on exit."""
    namespace = f"bench{uuid.uuid4().hex[:10]}"
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield namespace, client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()


@contextlib.asynccontextmanager
async def tansu(log_dir: Path) -> AsyncIterator[TansuBroker]:
    broker = TansuBroker(log_dir)
    await broker.start()
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


async def make_principal(dsn: str) -> dict[str, str]:
    """A user, a workspace and an all-scopes API key."""
    from engine.accounts.repository import create_api_key, create_user, create_workspace
    from engine.auth.api_key_tokens import SCOPES

    conn = await asyncpg.connect(dsn)
    try:
        user_id = await create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@example.test", "!unusable", "Bench")
        workspace_id = await create_workspace(conn, user_id, "Bench workspace")
        _, key = await create_api_key(
            conn, user_id=user_id, workspace_id=workspace_id, name="bench", scopes=sorted(SCOPES)
        )
    finally:
        await conn.close()
    return {"api_key": key.plaintext, "user_id": user_id, "workspace_id": workspace_id}


def platform_env(
    *, database_url: str, namespace: str, broker_url: str, data_dir: Path, port: int | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        KAFKA_BROKER=broker_url,
        CLICKHOUSE_URL=f"chdb://{data_dir / 'clickhouse'}",
        LINKRIFT_NAMESPACE=namespace,
        LINKRIFT_DATA_DIR=str(data_dir),
        LINKRIFT_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if port is not None:
        env["LINKRIFT_PORT"] = str(port)
    return env


def start_process(
    name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None
) -> ManagedProcess:
    return ManagedProcess(name, argv, log_dir=log_dir, env=env, cwd=REPO).start()


def wait_http(url: str, timeout: float, proc: ManagedProcess | None = None) -> None:
    """Block until `url` answers 200 (or any HTTP status when it is not a health URL)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive:
            raise RuntimeError(f"{proc.name} exited with {proc.returncode}:\n{proc.log_tail(40)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    tail = proc.log_tail(40) if proc else ""
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s\n{tail}")


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (for `linkrift api --workers N`, which forks N processes)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    children.append(int(entry.name))
    return children


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


# --- wrk -----------------------------------------------------------------------------------------

WRK_SCRIPT = REPO / "bench" / "wrk_user_agents.lua"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class LoadResult:
    target: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors plus non-2xx/3xx responses


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    target: str,
    url: str,
    *,
    seconds: float,
    threads: int,
    connections: int,
    script: Path | None = WRK_SCRIPT,
    cpus: str | None = None,
) -> LoadResult:
    """One bounded wrk run (wrk never follows redirects: a 302 is a completed request);
    `cpus` pins it with taskset (e.g. "1")."""
    argv = ["taskset", "-c", cpus] if cpus else []
    argv += [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
        "--timeout", "5s",
    ]  # fmt: skip
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run(
        [*argv, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    requests_match = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if requests_match is None:
        raise RuntimeError(f"wrk output not understood:\n{out}")
    requests = int(requests_match.group(1))
    duration = _ms(requests_match.group(2) + requests_match.group(3)) / 1e3
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_3xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_3xx.group(1)) if non_3xx else 0
    return LoadResult(
        target=target, requests=requests, seconds=duration, rps=requests / duration,
        p50_ms=_ms(p50.group(1)) if p50 else float("nan"), p99_ms=_ms(p99.group(1)) if p99 else float("nan"),
        errors=errors,
    )  # fmt: skip


# --- py-spy --------------------------------------------------------------------------------------


def py_spy_record(
    pids: Iterable[int], seconds: float, out_dir: Path, *, rate: int = 250
) -> list[subprocess.Popen[bytes]]:
    """Start `py-spy record` (raw folded stacks) on each pid; wait on the returned processes."""
    procs = []
    for pid in pids:
        argv = [
            PY_SPY, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", str(rate),
            "-f", "raw", "-o", str(out_dir / f"pyspy-{pid}.txt"), "--nonblocking",
        ]  # fmt: skip
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    return procs


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "handler (api/redirect.py:123)"; keep function and file.
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame.strip())
    if not match:
        return frame.strip()
    func, path = match.groups()
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{func} ({path})"


def fold_profile(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """(total samples, self samples per function, inclusive samples per function)."""
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, own, inclusive


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def pin(pids: Iterable[int], cpus: str) -> None:
    """Pin every thread of each process to `cpus` (taskset -a)."""
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=True)


def renice(pid: int, niceness: int) -> None:
    """Set the nice value of every thread of a process (Linux keeps it per thread)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)


def nginx_redirect(work: Path, port: int) -> ManagedProcess:
    """Debian's nginx (one worker, no access log) answering every path with `return 302`: the
    reference limit for a redirect server on this machine."""
    conf = work / "nginx.conf"
    template = (
        "worker_processes 1; daemon off; master_process off; pid DIR/nginx.pid; error_log stderr error;\n"
        "events { worker_connections 4096; }\n"
        "http { access_log off; client_body_temp_path DIR; proxy_temp_path DIR;\n"
        "  fastcgi_temp_path DIR; uwsgi_temp_path DIR; scgi_temp_path DIR;\n"
        "  server { listen 127.0.0.1:PORT; location / {\n"
        "    add_header Cache-Control 'private, no-store';\n"
        "    return 302 https://example.com/landing; } } }\n"
    )
    conf.write_text(template.replace("DIR", str(work)).replace("PORT", str(port)))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return ManagedProcess(
        "nginx", [nginx, "-e", "stderr", "-p", str(work), "-c", str(conf)], log_dir=work
    ).start()


def python() -> str:
    return sys.executable
