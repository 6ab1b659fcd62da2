"""Suspended workspaces, end to end with a running `linkrift worker`: `linkrift workspace suspend`
makes the workspace's links answer like deleted links in every cache tier (the worker relays one
`workspace_suspended` change per link and its link-change agent clears Redis and the api's LRU),
API writes to its links answer 403 `workspace_suspended` while reads stay allowed, and
`linkrift workspace resume` brings the links back. The operator CLI refuses bad ids with exit 2."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from engine.config import REPO_ROOT
from engine.naming import RedisKeys
from tests.fakes.api import serve_settings
from tests.integration.helpers import bearer, signup
from tests.pipeline_fixtures import Pipeline, running_pipeline, wait_until, worker_env

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def platform(
    tmp_path: Path, make_settings: Any, database_url: str, broker: Any, namespace: str, redis_client: Any
) -> AsyncIterator[tuple[Pipeline, Any]]:
    async with running_pipeline(tmp_path, database_url, broker.bootstrap, namespace, redis_client) as p:
        settings = make_settings(
            database_url=database_url,
            kafka_broker=broker.url,
            worker_url=p.worker.url,
            internal_token=p.token,
        )
        async with serve_settings(settings) as api:
            yield p, api


async def linkrift(database_url: str, namespace: str, tmp: Path, *argv: str) -> tuple[int, str, str]:
    """Run the real `linkrift` CLI as an operator would; (exit code, stdout, stderr)."""
    env = worker_env(
        database_url=database_url,
        broker_url="kafka://127.0.0.1:1",
        namespace=namespace,
        tmp=tmp,
        port=1,
        token="t",
    )
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *argv,
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _status(api: Any, path: str) -> int:
    return int((await api.client.get(path, allow_redirects=False)).status)


async def test_suspended_workspace_links_answer_like_deleted_links_until_resumed(
    platform: tuple[Pipeline, Any], database_url: str, namespace: str, redis_client: Any, tmp_path: Path
) -> None:
    _, api = platform
    user = await signup(api)
    ws, h = user["workspace_id"], bearer(user["access_token"], user["workspace_id"])
    # Inserted directly: an api-created link's own `created` change would clear the caches too
    # (whenever the worker gets to it), and this test must see the suspension's changes do that.
    conn = await asyncpg.connect(database_url)
    try:
        ids = {
            code: str(
                await conn.fetchval(
                    """INSERT INTO links (user_id, workspace_id, url, short_code)
                       SELECT owner_id, id, $2, $3 FROM workspaces WHERE id = $1 RETURNING id""",
                    ws,
                    f"https://e.com/{code}",
                    code,
                )
            )
            for code in ("sus-hot", "sus-cold")
        }
    finally:
        await conn.close()
    assert await _status(api, "/sus-hot") == 302  # now in the LRU and in Redis
    keys = RedisKeys(api.settings.namespace)
    assert await redis_client.exists(keys.link("sus-hot"))
    assert await _status(api, "/sus-hot") == 302  # served from the caches

    async def first_404() -> float:
        while await _status(api, "/sus-hot") != 404:
            await asyncio.sleep(0.02)
        return time.time()

    watcher = asyncio.create_task(first_404())  # polls while the operator's command runs
    try:
        code, out, err = await linkrift(
            database_url, namespace, tmp_path, "workspace", "suspend", ws, "--reason", "unpaid"
        )
    except BaseException:
        watcher.cancel()
        raise
    if code != 0:
        watcher.cancel()
    assert (code, err) == (0, ""), err
    assert f"workspace {ws} suspended at " in out
    # Never requested before: the redirect's query itself refuses a suspended workspace's link.
    assert await _status(api, "/sus-cold") == 404
    # Cached: gone from Redis and the api's LRU once the worker's link-change agent has run.
    gone_at = await asyncio.wait_for(watcher, timeout=30)
    conn = await asyncpg.connect(database_url)
    try:
        suspended_at = await conn.fetchval("SELECT suspended_at FROM workspaces WHERE id = $1", ws)
        relayed_at = await conn.fetchval(
            "SELECT max(published_at) FROM outbox WHERE payload->>'event' = 'workspace_suspended'"
        )
    finally:
        await conn.close()
    # A measurement for the report, not an assertion (speed belongs to bench/).
    relay = f"{relayed_at.timestamp() - suspended_at.timestamp():.3f} s" if relayed_at else "-"
    print(
        f"cached link answered 404 {gone_at - suspended_at.timestamp():.3f} s after the suspension"
        f" (outbox relayed after {relay})"
    )
    assert await redis_client.get(keys.link("sus-hot")) in (None, b"\x00missing")

    workspace = await (await api.client.get(f"/api/v1/workspaces/{ws}", headers=h)).json()
    assert workspace["suspended_at"] is not None
    # Writes to its links are refused; reads (and exports) stay allowed.
    writes = [
        api.client.post("/api/v1/links", json={"url": "https://e.com/new"}, headers=h),
        api.client.patch(f"/api/v1/links/{ids['sus-hot']}", json={"url": "https://e.com/x"}, headers=h),
        api.client.delete(f"/api/v1/links/{ids['sus-cold']}", headers=h),
    ]
    for request in writes:
        resp = await request
        error = (await resp.json())["error"]
        assert (resp.status, error["code"], error["field"]) == (403, "workspace_suspended", "workspace_id")
    listed = await api.client.get("/api/v1/links", headers=h)
    assert listed.status == 200
    assert sorted(link["short_code"] for link in (await listed.json())["data"]) == ["sus-cold", "sus-hot"]
    assert (await api.client.get("/api/v1/links/export.csv", headers=h)).status == 200

    code, out, err = await linkrift(database_url, namespace, tmp_path, "workspace", "resume", ws)
    assert (code, err, out.strip()) == (0, "", f"workspace {ws} resumed")

    async def both_redirect() -> bool:
        return [await _status(api, "/sus-hot"), await _status(api, "/sus-cold")] == [302, 302]

    # The resume's changes clear the "missing" entries cached during the suspension (which would
    # otherwise also expire, after NEGATIVE_TTL_SECONDS).
    assert await wait_until(both_redirect, within=20, interval=0.02)
    workspace = await (await api.client.get(f"/api/v1/workspaces/{ws}", headers=h)).json()
    assert workspace["suspended_at"] is None
    resp = await api.client.post("/api/v1/links", json={"url": "https://e.com/after"}, headers=h)
    assert resp.status == 201

    conn = await asyncpg.connect(database_url)
    try:

        async def all_published() -> bool:
            return not await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")

        assert await wait_until(all_published, within=20)  # the worker relayed every change
        events = await conn.fetch("SELECT payload->>'event' AS e FROM outbox ORDER BY id")
        audit = await conn.fetch(
            "SELECT action, new_values, user_agent FROM audit_logs WHERE workspace_id = $1 AND action LIKE 'workspace.%'"
            " ORDER BY created_at",
            ws,
        )
    finally:
        await conn.close()
    per_event = {
        e: sum(1 for r in events if r["e"] == e) for e in ("workspace_suspended", "workspace_resumed")
    }
    assert per_event == {"workspace_suspended": 2, "workspace_resumed": 2}
    actions = [r["action"] for r in audit]
    assert actions[-2:] == ["workspace.suspended", "workspace.resumed"]
    assert "unpaid" in str(audit[-2]["new_values"])


async def test_operator_cli_refuses_bad_input_clearly(
    database_url: str, namespace: str, tmp_path: Path
) -> None:
    async def run(*argv: str) -> tuple[int, str]:
        code, _out, err = await linkrift(database_url, namespace, tmp_path, "workspace", *argv)
        assert "Traceback" not in err
        return code, err

    code, err = await run("suspend", "not-a-uuid", "--reason", "x")
    assert code == 2 and "not a workspace id" in err
    code, err = await run("resume", "12345")
    assert code == 2 and "not a workspace id" in err
    unknown = str(uuid.uuid4())
    code, err = await run("suspend", unknown, "--reason", "x")
    assert (code, err.strip()) == (2, "linkrift workspace suspend: workspace_id: workspace not found")
    code, err = await run("resume", unknown)
    assert (code, err.strip()) == (2, "linkrift workspace resume: workspace_id: workspace not found")
    code, err = await run("suspend", str(uuid.uuid4()))  # --reason is required
    assert code == 2 and "--reason" in err

    conn = await asyncpg.connect(database_url)
    try:
        owner = await conn.fetchval(
            "INSERT INTO users (email, password_hash, name) VALUES ('op@e.com', 'x', 'Op') RETURNING id"
        )
        ws = str(
            await conn.fetchval(
                "INSERT INTO workspaces (name, slug, owner_id) VALUES ('W', 'w-op', $1) RETURNING id", owner
            )
        )
    finally:
        await conn.close()
    code, err = await run("suspend", ws, "--reason", "  ")
    assert code == 2 and "reason" in err
    code, err = await run("suspend", ws, "--reason", "r" * 501)
    assert code == 2 and "reason must be 1-500 characters" in err
    code, err = await run("resume", ws)
    assert (code, err.strip()) == (1, "linkrift workspace resume: workspace is not suspended")
    assert (await run("suspend", ws, "--reason", "abuse"))[0] == 0
    code, err = await run("suspend", ws, "--reason", "again")
    assert (code, err.strip()) == (1, "linkrift workspace suspend: workspace is already suspended")
