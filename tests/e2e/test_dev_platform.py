"""The platform as a user starts it: `linkrift dev`, then HTTP in and out."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from cli.procs import free_port, pid_alive
from tests.e2e.helpers import descendants, follow_once, http_request, spawn_dev, wait_for

pytestmark = pytest.mark.e2e


def test_dev_create_link_redirect_20_times_and_count(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    data_dir = tmp_path / "dev"
    started = time.monotonic()
    proc = spawn_dev(database_url, port, data_dir)
    base = f"http://127.0.0.1:{port}"
    children: set[int] = set()
    try:
        creds_path = data_dir / "credentials.json"
        healthy = wait_for(
            lambda: creds_path.exists() and http_request("GET", f"{base}/healthz")[0] == 200, timeout=60
        )
        assert healthy, "linkrift dev did not become healthy within 60 s"
        startup = time.monotonic() - started
        creds = json.loads(creds_path.read_text())
        assert set(creds) == {"base_url", "api_key", "workspace_id", "email", "password"}
        key = creds["api_key"]

        status, link = http_request(
            "POST", f"{base}/api/v1/links", key=key, body={"url": "https://example.com/landing"}
        )
        assert status == 201, link
        assert {"id", "short_code", "short_url", "url"} <= set(link)
        assert link["short_url"].endswith("/" + link["short_code"])

        status, err = http_request("POST", f"{base}/api/v1/links", key=key, body={"url": "ftp://nope"})
        assert status == 422 and err["error"]["field"] == "url"
        status, err = http_request(
            "POST",
            f"{base}/api/v1/links",
            key=key,
            body={"url": "https://a.example", "short_code": link["short_code"]},
        )
        assert status == 409 and err["error"]["field"] == "short_code"

        clicked = time.monotonic()
        for _ in range(20):
            assert follow_once(f"{base}/{link['short_code']}") == (302, "https://example.com/landing")

        def counted() -> Any:
            status, body = http_request("GET", f"{base}/api/v1/links/{link['id']}/analytics", key=key)
            return body if status == 200 and body["total_clicks"] == 20 and body["clicks"] == 20 else None

        analytics = wait_for(counted, timeout=20)
        assert analytics, "20 clicks were not counted within 20 s"
        freshness = time.monotonic() - clicked
        assert analytics["unique_clicks"] == 1  # one client, one visitor id
        assert sum(day["clicks"] for day in analytics["clicks_by_day"]) == 20
        children = descendants(proc.pid)
        assert len(children) >= 3  # api, worker and the tansu broker at least
        print(f"\nlinkrift dev startup {startup:.1f}s; 20 clicks counted after {freshness:.2f}s")
    except BaseException:
        children = descendants(proc.pid)
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
