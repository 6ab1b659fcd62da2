"""The redirect front's HTTP handling over raw sockets (the `api` fixture serves through the front):
keep-alive, pipelining, HTTP/1.0, Connection: close, Expect, size limits, slow clients, the
connection limit and request smuggling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from api.front import Front
from engine.auth.passwords import hash_password
from tests.conftest import ApiHarness
from tests.integration.helpers import DEST, add_link

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@dataclass
class Reply:
    version: str
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, *, head: bool = False, within: float = 10.0) -> Reply | None:
        """The next response, or None once the server closed the connection."""
        try:
            raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = raw.decode("latin-1").split("\r\n")
        version, status, _ = (lines[0] + " ").split(" ", 2)
        headers = [(k.lower(), v) for k, _, v in (line.partition(": ") for line in lines[1:] if line)]
        reply = Reply(version, int(status), headers)
        length = int(reply.header("content-length") or 0)
        if not head and reply.status >= 200 and length:
            reply.body = await asyncio.wait_for(self.reader.readexactly(length), within)
        return reply

    async def closed(self, within: float = 10.0) -> bool:
        """The server closed the connection (EOF or reset) without sending anything more."""
        try:
            return await asyncio.wait_for(self.reader.read(1), within) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


@pytest_asyncio.fixture
async def connect(api: ApiHarness) -> AsyncIterator[Any]:
    conns: list[Conn] = []

    async def open_conn() -> Conn:
        server = api.client.server
        reader, writer = await asyncio.open_connection(server.host, server.port)
        conn = Conn(reader, writer)
        conns.append(conn)
        return conn

    yield open_conn
    for conn in conns:
        conn.close()


def front_of(api: ApiHarness) -> Front:
    front = api.client.server.front
    assert front is not None, "the api fixture serves through the front"
    return front


def get(path: str, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: go.test", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_keep_alive_pipelining_and_handoff_keep_the_order(
    api: ApiHarness, pg: asyncpg.Connection, connect: Any
) -> None:
    await add_link(pg, api, "pa", "https://dest.example/a")
    await add_link(pg, api, "pb", "https://dest.example/b")
    conn = await connect()
    # One write: two links (cache misses: the slow path), an unknown code (aiohttp's 404), a link again.
    await conn.send(get("/pa") + get("/pb") + get("/nope") + get("/pa"))
    replies = [await conn.reply() for _ in range(4)]
    assert [r.status if r else None for r in replies] == [302, 302, 404, 302]
    assert [r.header("location") for r in replies if r] == [
        "https://dest.example/a",
        "https://dest.example/b",
        None,
        "https://dest.example/a",
    ]
    # A new connection: both links are cached now, answered by the front's synchronous path.
    conn = await connect()
    for _ in range(3):
        await conn.send(get("/pb"))
        reply = await conn.reply()
        assert reply is not None and reply.status == 302 and reply.version == "HTTP/1.1"
        assert reply.header("connection") is None


async def test_http_10_and_connection_close(api: ApiHarness, pg: asyncpg.Connection, connect: Any) -> None:
    await add_link(pg, api, "old", DEST)
    conn = await connect()
    await conn.send(get("/old", version="1.0"))
    reply = await conn.reply()
    assert reply is not None and reply.version == "HTTP/1.0" and reply.status == 302
    assert reply.header("location") == DEST
    assert await conn.closed()

    conn = await connect()
    await conn.send(get("/old", "Connection: keep-alive", version="1.0"))
    reply = await conn.reply()
    assert reply is not None and reply.header("connection") == "keep-alive"
    await conn.send(get("/old", "Connection: keep-alive", version="1.0"))
    assert (await conn.reply()) is not None

    conn = await connect()
    # The request after a Connection: close is never answered.
    await conn.send(get("/old", "Connection: close") + get("/old"))
    reply = await conn.reply()
    assert reply is not None and reply.status == 302 and reply.header("connection") == "close"
    assert await conn.closed()

    conn = await connect()
    await conn.send(b"HEAD /old HTTP/1.1\r\nHost: go.test\r\n\r\n")
    reply = await conn.reply(head=True)
    assert reply is not None and reply.status == 302 and reply.header("location") == DEST


@pytest.mark.parametrize(
    "smuggle",
    [
        # Content-Length and Transfer-Encoding together: which one frames the body is ambiguous.
        b"POST /sm HTTP/1.1\r\nHost: go.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        b"GET /sm HTTP/1.1\r\nHost: go.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
        # Two Content-Lengths that disagree, and two that agree.
        b"GET /sm HTTP/1.1\r\nHost: go.test\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n",
        b"GET /sm HTTP/1.1\r\nHost: go.test\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        # A header name with whitespace before the colon, a signed length, an obsolete line fold.
        b"GET /sm HTTP/1.1\r\nHost: go.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"GET /sm HTTP/1.1\r\nHost: go.test\r\nContent-Length: +0\r\n\r\n",
        b"GET /sm HTTP/1.1\r\nHost: go.test\r\nTransfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n",
    ],
)
async def test_ambiguous_framing_is_rejected_and_closed(
    api: ApiHarness, pg: asyncpg.Connection, connect: Any, smuggle: bytes
) -> None:
    await add_link(pg, api, "sm", DEST)
    await add_link(pg, api, "hidden", "https://dest.example/smuggled")
    conn = await connect()
    await conn.send(smuggle + get("/hidden"))
    reply = await conn.reply()
    assert reply is not None and reply.status == 400
    assert await conn.closed()  # the smuggled request behind it is never answered


async def test_expect_continue_on_the_password_form(
    api: ApiHarness, pg: asyncpg.Connection, connect: Any
) -> None:
    await add_link(pg, api, "locked", DEST, password_hash=hash_password("open sesame"))
    body = b"password=open+sesame"
    conn = await connect()
    await conn.send(
        b"POST /locked HTTP/1.1\r\nHost: go.test\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)
    )
    interim = await conn.reply()
    assert interim is not None and interim.status == 100
    await conn.send(body)
    reply = await conn.reply()
    assert reply is not None and reply.status == 303 and reply.header("location") == DEST
    assert (reply.header("set-cookie") or "").startswith("lr_pw=")


async def test_size_limits(api: ApiHarness, pg: asyncpg.Connection, connect: Any) -> None:
    await add_link(pg, api, "big", DEST)
    cases = [
        (get("/big?" + "x" * 9000), 414),
        (get("/big", "X-Big: " + "y" * 9000), 431),
    ]
    for request, status in cases:
        conn = await connect()
        await conn.send(request)
        reply = await conn.reply()
        assert reply is not None and reply.status == status
        assert await conn.closed()
    # A head that never ends: refused once it passes 64 KiB, not buffered forever.
    conn = await connect()
    await conn.send(b"GET /big HTTP/1.1\r\nHost: go.test\r\n" + b"X-A: b\r\n" * 9000)
    reply = await conn.reply()
    assert reply is not None and reply.status == 431
    assert await conn.closed()


async def test_slow_clients_are_cut_off(api: ApiHarness, pg: asyncpg.Connection, connect: Any) -> None:
    await add_link(pg, api, "slow", DEST)
    front = front_of(api)
    front.header_timeout = 2
    front.keepalive_timeout = 2
    # slowloris: a header line every 0.3 s keeps the connection busy but never completes the head.
    conn = await connect()
    await conn.send(b"GET /slow HTTP/1.1\r\nHost: go.test\r\n")
    reply_task = asyncio.ensure_future(conn.reply(within=30))
    for i in range(200):
        if reply_task.done():
            break
        try:
            await conn.send(b"X-Drip-%d: x\r\n" % i)
        except ConnectionError:
            break
        await asyncio.sleep(0.3)
    reply = await reply_task
    assert reply is not None and reply.status == 408
    assert await conn.closed()
    # An idle keep-alive connection is closed too.
    conn = await connect()
    await conn.send(get("/slow"))
    assert (await conn.reply()) is not None
    assert await conn.closed(within=30)


async def test_connection_limit(api: ApiHarness, pg: asyncpg.Connection, connect: Any) -> None:
    await add_link(pg, api, "lim", DEST)
    front = front_of(api)
    first = await connect()
    await first.send(get("/lim"))
    assert (await first.reply()) is not None
    front.max_connections = front.connection_count() + 1
    second = await connect()
    await second.send(get("/lim"))
    assert (await second.reply()) is not None
    third = await connect()  # over the limit: closed at once, never answered
    with pytest.raises((ConnectionError, AssertionError)):
        await third.send(get("/lim"))
        assert (await third.reply()) is not None
    # The connections already open keep working.
    await first.send(get("/lim"))
    assert (await first.reply()) is not None


async def test_other_paths_are_aiohttps_on_the_same_port(api: ApiHarness, connect: Any) -> None:
    conn = await connect()
    # /readyz (PostgreSQL and Redis, both up here) rather than /healthz, whose answer depends on
    # Kafka and ClickHouse too: the test asserts one outcome.
    await conn.send(get("/readyz"))
    reply = await conn.reply()
    assert reply is not None and reply.status == 200
    assert (reply.header("content-type") or "").startswith("application/json")
    await conn.send(
        b"GET /api/v1/links HTTP/1.1\r\nHost: go.test\r\nAuthorization: Bearer "
        + api.api_key.encode()
        + b"\r\n\r\n"
    )
    reply = await conn.reply()
    assert reply is not None and reply.status == 200
