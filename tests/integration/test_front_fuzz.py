"""Fuzzing the front's request path with hypothesis over real sockets: whatever a client sends, the
front never crashes or hangs, answers with a well-formed status below 500 or closes the
connection, and a malformed request line gets a 400 (or the connection closed). The server (front
and aiohttp behind it, real PostgreSQL/Redis/broker) runs on its own event loop in a thread, so the
test can use blocking sockets."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp.web_runner import AppRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.front import Front, bind, start_front
from tests.conftest import _make_principal

pytestmark = pytest.mark.integration
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


class ThreadedFront:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self.front: Front | None = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)

    async def _start(self) -> None:
        self.runner = AppRunner(create_app(self.settings), access_log=None)
        await self.runner.setup()
        sock = bind("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.front, self.listener = await start_front(self.runner, sock)
        self.front.header_timeout = 2
        self.front.keepalive_timeout = 2

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _stop(self) -> None:
        self.listener.close()
        assert self.front is not None
        await self.front.stop()
        await self.runner.cleanup()


@pytest.fixture
def server(make_settings: Any, database_url: str, broker: Any) -> Iterator[ThreadedFront]:
    async def link() -> None:
        who = await _make_principal(database_url)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "INSERT INTO links (user_id, workspace_id, short_code, url) VALUES ($1, $2, 'fz', $3)",
                who["user_id"],
                who["workspace_id"],
                "https://dest.example/fz",
            )
        finally:
            await conn.close()

    asyncio.run(link())
    threaded = ThreadedFront(make_settings(database_url=database_url, kafka_broker=broker.url))
    threaded.start()
    try:
        yield threaded
    finally:
        threaded.stop()


def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, half-close, read until the server closes. A hang fails the test (timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close first (an early 400 or 431)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received


def assert_alive(port: int) -> None:
    reply = exchange(port, b"GET /fz HTTP/1.1\r\nHost: go.test\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 302 "), reply[:200]
    assert b"\r\nLocation: https://dest.example/fz\r\n" in reply


EOL = st.sampled_from([b"\r\n", b"\n", b"\r", b""])
TOKEN = st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"get", b"G@T", b"", b"GET GET", b"\x00"])
PATH = st.one_of(
    st.sampled_from(
        [b"/fz", b"/fz/", b"/fz?x=1", b"/nope", b"/", b"*", b"http://go.test/fz", b"/a/../fz", b"/%ZZ"]
    ),
    st.binary(max_size=40),
    st.text(max_size=40).map(lambda t: b"/" + t.encode("utf-8", "surrogatepass")),
)
VERSION = st.sampled_from(
    [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"HTTP/0.9", b"", b"http/1.1"]
)
HEADER_NAME = st.one_of(
    st.sampled_from(
        [
            b"Host",
            b"Content-Length",
            b"Transfer-Encoding",
            b"Connection",
            b"Expect",
            b"Cookie",
            b"X-Forwarded-For",
            b"Upgrade",
            b"User-Agent",
            b"Content-Length ",
            b" Host",
        ]
    ),
    st.binary(max_size=12),
)
HEADER_VALUE = st.one_of(
    st.sampled_from(
        [
            b"go.test",
            b"0",
            b"5",
            b"-1",
            b"chunked",
            b"chunked, identity",
            b"close",
            b"keep-alive",
            b"100-continue",
            b"websocket",
            b"lr_pw=x; lr_ab_1=a",
            b"1.2.3.4, 5.6.7.8",
            b"99999999999999999999",
        ]
    ),
    st.binary(max_size=30),
)
REQUEST = st.tuples(
    TOKEN, PATH, VERSION, EOL, st.lists(st.tuples(HEADER_NAME, HEADER_VALUE, EOL), max_size=6), EOL,
    st.binary(max_size=30),
)  # fmt: skip


def render(parts: tuple[Any, ...]) -> bytes:
    method, path, version, eol, headers, end, body = parts
    head = method + b" " + path + b" " + version + eol
    head += b"".join(name + b": " + value + line_end for name, value, line_end in headers)
    return head + end + body


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=REQUEST, pipelined=st.booleans())
def test_any_request_gets_a_sane_answer_or_a_close(
    server: ThreadedFront, request: Any, pipelined: bool
) -> None:
    data = render(request)
    if pipelined:
        data = b"GET /fz HTTP/1.1\r\nHost: go.test\r\n\r\n" + data
    reply = exchange(server.port, data)
    statuses = [int(m.group(1)) for m in STATUS_LINE.finditer(reply)]
    if reply:
        assert STATUS_LINE.match(reply), reply[:200]
    assert all(100 <= s < 500 for s in statuses), (data, reply[:500])
    if pipelined:
        assert statuses[:1] == [302], reply[:300]  # what came before the garbage is answered
    assert_alive(server.port)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    line=st.one_of(
        st.tuples(
            st.sampled_from([b"G@T", b"GE T", b"\x00GET", b"GET\x7f"]), st.just(b"/fz"), st.just(b"HTTP/1.1")
        ),
        st.tuples(st.just(b"GET"), st.sampled_from([b"/f z", b"/fz\x00", b"/fz\x7f"]), st.just(b"HTTP/1.1")),
        st.tuples(st.just(b"GET"), st.just(b"/fz"), st.sampled_from([b"HTTP/1.1x", b"HTTX/1.1", b"HTTP/11"])),
    ),
    headers=st.lists(st.tuples(st.sampled_from([b"Host", b"X-A"]), st.binary(max_size=10)), max_size=3),
)
def test_a_malformed_request_line_is_a_400_or_a_close(
    server: ThreadedFront, line: tuple[bytes, bytes, bytes], headers: list[tuple[bytes, bytes]]
) -> None:
    data = (
        b" ".join(line)
        + b"\r\n"
        + b"".join(n + b": " + v.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n" for n, v in headers)
        + b"\r\n"
    )
    reply = exchange(server.port, data)
    if reply:
        match = STATUS_LINE.match(reply)
        assert match is not None and int(match.group(1)) == 400, (data, reply[:300])
    assert_alive(server.port)
