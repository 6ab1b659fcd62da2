"""The platform as a user starts it: `linkrift dev`, then HTTP in and out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cli.procs import free_port, pid_alive

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _request(method: str, url: str, *, key: str | None = None, body: Any = None) -> tuple[int, Any]:
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


def _follow_once(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def _descendants(pid: int) -> set[int]:
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


def _wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> Any:
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


def test_dev_create_link_redirect_20_times_and_count(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    data_dir = tmp_path / "dev"
    started = time.monotonic()
    proc = spawn_dev(database_url, port, data_dir)
    base = f"http://127.0.0.1:{port}"
    children: set[int] = set()
    try:
        creds_path = data_dir / "credentials.json"
        healthy = _wait_for(
            lambda: creds_path.exists() and _request("GET", f"{base}/healthz")[0] == 200, timeout=60
        )
        assert healthy, "linkrift dev did not become healthy within 60 s"
        startup = time.monotonic() - started
        creds = json.loads(creds_path.read_text())
        assert set(creds) == {"base_url", "api_key", "workspace_id", "email", "password"}
        key = creds["api_key"]

        status, link = _request(
            "POST", f"{base}/api/v1/links", key=key, body={"url": "https://example.com/landing"}
        )
        assert status == 201, link
        assert {"id", "short_code", "short_url", "url"} <= set(link)
        assert link["short_url"].endswith("/" + link["short_code"])

        status, err = _request("POST", f"{base}/api/v1/links", key=key, body={"url": "ftp://nope"})
        assert status == 422 and err["error"]["field"] == "url"
        status, err = _request(
            "POST",
            f"{base}/api/v1/links",
            key=key,
            body={"url": "https://a.example", "short_code": link["short_code"]},
        )
        assert status == 409 and err["error"]["field"] == "short_code"

        clicked = time.monotonic()
        for _ in range(20):
            assert _follow_once(f"{base}/{link['short_code']}") == (302, "https://example.com/landing")

        def counted() -> Any:
            status, body = _request("GET", f"{base}/api/v1/links/{link['id']}/analytics", key=key)
            return body if status == 200 and body["total_clicks"] == 20 and body["clicks"] == 20 else None

        analytics = _wait_for(counted, timeout=20)
        assert analytics, "20 clicks were not counted within 20 s"
        freshness = time.monotonic() - clicked
        assert analytics["unique_clicks"] == 1  # one client, one visitor id
        assert sum(day["clicks"] for day in analytics["clicks_by_day"]) == 20
        children = _descendants(proc.pid)
        assert len(children) >= 3  # api, worker and the tansu broker at least
        print(f"\nlinkrift dev startup {startup:.1f}s; 20 clicks counted after {freshness:.2f}s")
    except BaseException:
        children = _descendants(proc.pid)
        raise
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=40)
        finally:
            leftovers = sorted(p for p in children if pid_alive(p))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
    # `linkrift dev` stopped every child it started (api, worker, broker).
    assert proc.returncode == 0, proc.stdout.read().decode()[-3000:] if proc.stdout else ""
    assert leftovers == []
