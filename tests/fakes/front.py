"""An aiohttp TestServer whose port is served by the redirect front (api.front), as in production:
the front answers short links and hands every other request to the same aiohttp app."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiohttp.test_utils import TestServer, get_port_socket
from yarl import URL

from api.front import Front, start_front


class FrontTestServer(TestServer):
    front: Front | None = None
    listener: asyncio.AbstractServer | None = None

    async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self._loop = loop
        self.runner = await self._make_runner(handler_cancellation=True, **kwargs)
        await self.runner.setup()
        sock = get_port_socket(self.host, self.port or 0, socket.AF_INET)
        self.host, self.port = sock.getsockname()[:2]
        sock.setblocking(False)
        self.front, self.listener = await start_front(self.runner, sock)
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.front is not None:
            await self.front.stop()
            self.front = None
        await super().close()


def make_test_server(app: Any, kind: str) -> TestServer:
    """The api as `kind` serves it: "front" (production: the front, aiohttp behind it) or
    "aiohttp" (the aiohttp app alone, the routes as they were before the front)."""
    if kind == "front":
        return FrontTestServer(app, host="127.0.0.1")
    return TestServer(app, host="127.0.0.1")
