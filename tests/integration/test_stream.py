"""Live click stream (SSE) against real Redis: the worker's mirror writes, the api streams."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from engine.clicks.models import EnrichedClick
from engine.naming import RedisKeys
from streams.sinks.realtime import RealtimeMirror
from tests.conftest import ApiHarness
from tests.integration._api_server import serve_api

pytestmark = pytest.mark.integration

STREAM = "/api/v1/stream/clicks"


@pytest_asyncio.fixture
async def stream_api(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any
) -> AsyncIterator[ApiHarness]:
    settings = make_settings(database_url=database_url, kafka_broker=broker.url, sse_heartbeat_seconds=0.2)
    async with serve_api(settings) as harness:
        yield harness


def _click(workspace_id: str, link_id: str) -> EnrichedClick:
    return EnrichedClick(
        event_id=uuid.uuid4().hex, ts=0.0, link_id=link_id, workspace_id=workspace_id, domain="",
        short_code="abc", destination="https://example.com", rule_id="", variant="", kind="redirect",
        method="GET", ip="203.0.113.9", user_agent="Secret/1.0", referer="", referer_domain="",
        language="en", visitor_id="v", is_unique=True, is_bot=False, is_preview=False, country_code="DE",
    )  # fmt: skip


async def _new_link(api: ApiHarness, headers: dict[str, str]) -> str:
    resp = await api.client.post("/api/v1/links", json={"url": "https://example.com/x"}, headers=headers)
    assert resp.status == 201
    return str((await resp.json())["id"])


async def _next_event(resp: Any, within: float = 1.0) -> dict[str, str]:
    """The next SSE event (heartbeat comments skipped), or TimeoutError."""
    event: dict[str, str] = {}
    async with asyncio.timeout(within):
        while True:
            line = (await resp.content.readline()).decode().rstrip("\r\n")
            if not line:
                if event:
                    return event
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            event[name] = value


def _rows(clicks: list[Any], first_offset: int, partition: int = 0) -> list[tuple[int, int, Any]]:
    return [(partition, first_offset + i, c) for i, c in enumerate(clicks)]


async def test_feed_gets_each_click_once_across_replays(stream_api: ApiHarness, redis_client: Any) -> None:
    """A batch replayed after a crash (same partitions and offsets, some already published)
    publishes exactly the clicks the feed lacks."""
    api = stream_api
    link = await _new_link(api, api.auth)
    keys = RedisKeys(api.settings.namespace)
    mirror = RealtimeMirror(redis_client, keys)
    clicks = [_click(api.workspace_id, link) for _ in range(8)]
    assert await mirror.write({}, {}, _rows(clicks[:5], 100)) == 5
    # Replay of offsets 100..107 (a crash after the first five were published).
    assert await mirror.write({}, {}, _rows(clicks, 100)) == 3
    assert await mirror.write({}, {}, _rows(clicks, 100)) == 0
    # A batch may carry buffered newer events before older re-delivered ones (after a rebalance):
    # the older, unpublished clicks still go out, in offset order.
    late = [_click(api.workspace_id, link) for _ in range(4)]
    assert (
        await mirror.write({}, {}, [*_rows(late[2:], 110), *_rows(late[:2], 108), *_rows(late[2:], 110)]) == 4
    )
    clicks += late
    # Another partition has its own position.
    other = [_click(api.workspace_id, link) for _ in range(2)]
    assert await mirror.write({}, {}, _rows(other, 100, partition=1)) == 2
    entries = await redis_client.xrange(keys.click_feed(api.workspace_id))
    assert [e[1][b"event_id"].decode() for e in entries] == [c.event_id for c in clicks + other]


async def test_uncertain_copies_are_published_only_if_the_feed_lacks_them(
    stream_api: ApiHarness, redis_client: Any
) -> None:
    """Copies of clicks counted in a lost incarnation of clicks.raw (new positions, epoch 1): the
    feed gets those it does not hold, once, in the new incarnation's position order."""
    api = stream_api
    link = await _new_link(api, api.auth)
    keys = RedisKeys(api.settings.namespace)
    mirror = RealtimeMirror(redis_client, keys)
    clicks = [_click(api.workspace_id, link) for _ in range(4)]
    assert await mirror.write({}, {}, _rows(clicks[:2], 0)) == 2  # 2 and 3 never published
    epoch = 1 << 44
    copies = _rows([clicks[1], clicks[2], clicks[3], clicks[2]], epoch)
    fresh = [_click(api.workspace_id, link)]
    assert await mirror.write({}, {}, _rows(fresh, epoch + 4), copies) == 3
    assert await mirror.write({}, {}, [], copies) == 0
    entries = await redis_client.xrange(keys.click_feed(api.workspace_id))
    assert [e[1][b"event_id"].decode() for e in entries] == [c.event_id for c in [*clicks, *fresh]]


async def test_stream_is_per_workspace_and_resumes(stream_api: ApiHarness, redis_client: Any) -> None:
    api = stream_api
    a1, a2 = await _new_link(api, api.auth), await _new_link(api, api.auth)
    other = await api.create_principal()
    other_auth = {"Authorization": f"Bearer {other['api_key']}"}
    mirror = RealtimeMirror(redis_client, RedisKeys(api.settings.namespace))

    resp = await api.client.get(STREAM, headers=api.auth)
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    theirs, mine = _click(other["workspace_id"], str(uuid.uuid4())), _click(api.workspace_id, a1)
    await mirror.write({}, {}, _rows([theirs, mine], 0))
    event = await _next_event(resp)
    assert event["id"] == mine.event_id and event["event"] == "click"
    data = orjson.loads(event["data"])
    assert data["link_id"] == a1 and data["country_code"] == "DE"
    assert "ip" not in data and "user_agent" not in data
    with pytest.raises(TimeoutError):  # the other workspace's click never comes
        await _next_event(resp, 0.5)
    resp.close()

    # Clicks while disconnected come back on reconnect with Last-Event-ID, in order.
    missed = [_click(api.workspace_id, a1), _click(api.workspace_id, a2)]
    await mirror.write({}, {}, _rows(missed, 2))
    resp = await api.client.get(STREAM, headers={**api.auth, "Last-Event-ID": mine.event_id})
    assert [(await _next_event(resp))["id"] for _ in missed] == [c.event_id for c in missed]
    resp.close()

    # A link filter applies to the replay and to live clicks.
    resp = await api.client.get(
        STREAM, params={"link_id": a1}, headers={**api.auth, "Last-Event-ID": mine.event_id}
    )
    assert (await _next_event(resp))["id"] == missed[0].event_id
    live = [_click(api.workspace_id, a2), _click(api.workspace_id, a1)]
    await mirror.write({}, {}, _rows(live, 4))
    assert (await _next_event(resp))["id"] == live[1].event_id
    resp.close()

    # An id no longer (or never) in the buffer replays the whole buffer: B has only its own click.
    resp = await api.client.get(STREAM, params={"last_event_id": "gone"}, headers=other_auth)
    assert (await _next_event(resp))["id"] == theirs.event_id
    with pytest.raises(TimeoutError):
        await _next_event(resp, 0.5)
    resp.close()


async def test_heartbeat_comments(stream_api: ApiHarness) -> None:
    resp = await stream_api.client.get(STREAM, headers=stream_api.auth)
    async with asyncio.timeout(1.0):
        while (await resp.content.readline()).strip() != b": ping":
            pass
    resp.close()


async def test_stream_authorization_and_validation(stream_api: ApiHarness) -> None:
    api = stream_api
    assert (await api.client.get(STREAM)).status == 401
    other = await api.create_principal()
    their_link = await _new_link(api, {"Authorization": f"Bearer {other['api_key']}"})
    assert (await api.client.get(STREAM, params={"link_id": their_link}, headers=api.auth)).status == 404
    for params, field in (({"link_id": "x"}, "link_id"), ({"since": "1"}, "since")):
        resp = await api.client.get(STREAM, params=params, headers=api.auth)
        assert resp.status == 422 and (await resp.json())["error"]["field"] == field
    resp = await api.client.get(STREAM, headers={**api.auth, "Last-Event-ID": "x" * 65})
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "Last-Event-ID"
    readonly = await api.create_principal(scopes=["links:read"])
    assert (
        await api.client.get(STREAM, headers={"Authorization": f"Bearer {readonly['api_key']}"})
    ).status == 403
