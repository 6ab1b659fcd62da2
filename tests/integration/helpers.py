"""Helpers the integration tests share (plain functions; fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from api.state import EMITTER
from engine.clicks.models import EnrichedClick, RawClick
from tests.conftest import ApiHarness

PASSWORD = "correct horse battery"
# The destination of links added with `add_link`.
DEST = "https://dest.example/landing"


def bearer(token: str, workspace_id: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if workspace_id:
        headers["X-Workspace-Id"] = workspace_id
    return headers


async def signup(api, email: str | None = None) -> dict:
    email = email or f"{uuid.uuid4().hex[:10]}@example.test"
    resp = await api.client.post(
        "/api/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": "Ann"}
    )
    assert resp.status == 201, await resp.text()
    return {**await resp.json(), "email": email}


def outbox_tokens(api, to: str) -> list[str]:
    outbox = Path(api.settings.data_dir).resolve() / "outbox"
    found = []
    for path in sorted(outbox.glob("*.eml")) if outbox.exists() else []:
        text = path.read_text()
        if f"To: {to}" in text:
            found.extend(re.findall(r"lro_[A-Za-z0-9_-]{43}", text)[:1])
    return found


def verify_webhook(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """The verification snippet from docs/webhooks-billing.md, verbatim (stdlib only)."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


async def consume_clicks(bootstrap: str, topic: str, expect: int, within: float = 20.0) -> list[RawClick]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[RawClick] = []
    try:
        deadline = asyncio.get_running_loop().time() + within
        while len(got) < expect and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                got.extend(RawClick.loads(r.value) for r in records)
        # Anything beyond `expect` must also show up now, not later.
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            got.extend(RawClick.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return got


def record_clicks(h: ApiHarness) -> list[RawClick]:
    """Every RawClick the api emits, read back from the line the emitter gets (still handed on
    to the real emitter). Both the aiohttp route (`emit`) and the front (`emit_line`) end in
    `emit_line`."""
    emitter = h.client.server.app[EMITTER]
    seen: list[RawClick] = []
    original = emitter.emit_line

    def emit_line(line: bytes, key: bytes) -> None:
        click = RawClick.loads(line)
        assert key == click.link_id.encode()
        seen.append(click)
        original(line, key)

    emitter.emit_line = emit_line  # type: ignore[method-assign]
    return seen


def enriched_click(link: str, ws: str, visitor: str, at: datetime, **fields: Any) -> EnrichedClick:
    base: dict[str, Any] = {
        "event_id": uuid.uuid4().hex, "ts": at.timestamp(), "link_id": link, "workspace_id": ws,
        "domain": "", "short_code": "abc", "destination": "https://example.com", "rule_id": "",
        "variant": "", "kind": "redirect", "method": "GET", "ip": "203.0.113.9", "user_agent": "UA/1.0",
        "referer": "", "referer_domain": "", "language": "en", "visitor_id": visitor,
        "is_unique": False, "is_bot": False, "is_preview": False,
    }  # fmt: skip
    base.update(fields)
    return EnrichedClick(**base)


async def join_workspace(api, owner: dict, role: str) -> dict:
    """A new user invited into owner's workspace with `role`."""
    member = await signup(api)
    ws = owner["workspace_id"]
    resp = await api.client.post(
        f"/api/v1/workspaces/{ws}/invitations",
        json={"email": member["email"], "role": role},
        headers=bearer(owner["access_token"]),
    )
    assert resp.status == 201, await resp.text()
    token = outbox_tokens(api, member["email"])[-1]
    resp = await api.client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=bearer(member["access_token"])
    )
    assert resp.status == 200 and (await resp.json())["workspace_id"] == ws
    return member


async def seed_resources(api: Any) -> dict[str, str]:
    """One of each resource the api manages, created through the api; their ids by path parameter."""

    async def create(path: str, body: dict[str, Any]) -> str:
        resp = await api.client.post(path, json=body, headers=api.auth)
        assert resp.status == 201, (path, await resp.text())
        return str((await resp.json())["id"])

    link_id = await create("/api/v1/links", {"url": "https://example.com/fuzz", "short_code": "fuzz"})
    page_id = await create("/api/v1/bio-pages", {"slug": "fuzz", "title": "Fuzz"})
    return {
        "link_id": link_id,
        "tag_id": await create("/api/v1/tags", {"name": "fuzz"}),
        "rule_id": await create(
            f"/api/v1/links/{link_id}/rules",
            {
                "rule_type": "device",
                "conditions": {"device_types": ["mobile"]},
                "destination_url": "https://example.org/m",
            },
        ),
        "qr_id": await create(f"/api/v1/links/{link_id}/qr-codes", {}),
        "page_id": page_id,
        "bio_link_id": await create(
            f"/api/v1/bio-pages/{page_id}/links", {"title": "Home", "url": "https://example.com"}
        ),
        "theme_id": await create("/api/v1/bio-themes", {"name": "fuzz"}),
        "domain_id": await create("/api/v1/domains", {"domain": "fuzz.example.com"}),
        "workspace_id": api.workspace_id,
        "user_id": api.user_id,
        "code": "fuzz",
        "slug": "fuzz",
    }


async def add_link(pg: asyncpg.Connection, h: ApiHarness, code: str, url: str = DEST, **columns: Any) -> str:
    values = {"user_id": h.user_id, "workspace_id": h.workspace_id, "short_code": code, "url": url, **columns}
    names = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return str(
        await pg.fetchval(f"INSERT INTO links ({names}) VALUES ({params}) RETURNING id", *values.values())
    )


async def add_domain(pg: asyncpg.Connection, h: ApiHarness, domain: str, **columns: Any) -> str:
    values = {"workspace_id": h.workspace_id, "domain": domain, "is_verified": True, **columns}
    names = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return str(
        await pg.fetchval(f"INSERT INTO domains ({names}) VALUES ({params}) RETURNING id", *values.values())
    )
