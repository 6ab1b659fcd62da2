"""Helpers the end-to-end tests share (plain functions; fixtures are in conftest.py): HTTP with
urllib, waiting, and `linkrift dev` started as a user starts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cli.procs import free_port

REPO = Path(__file__).resolve().parents[2]


def http_request(method: str, url: str, *, key: str | None = None, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else raw
    except (urllib.error.URLError, ConnectionError):
        return 0, None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def follow_once(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def descendants(pid: int) -> set[int]:
    """Every live descendant of `pid` (children run in their own process groups)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    return last


def spawn_dev(
    database_url: str, port: int, data_dir: Path, *, partitions: int = 4
) -> subprocess.Popen[bytes]:
    """`linkrift dev` as a user starts it, with its own tansu broker and chDB, stdout piped."""
    env = dict(os.environ)
    env.pop("KAFKA_BROKER", None)  # dev must start its own broker
    env.pop("CLICKHOUSE_URL", None)  # and embed chDB under the data dir
    env.update(
        DATABASE_URL=database_url,
        LINKRIFT_WORKER_PORT=str(free_port()),
        LINKRIFT_NAMESPACE=f"e2e{port}",
        LINKRIFT_TOPIC_PARTITIONS=str(partitions),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dev", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
