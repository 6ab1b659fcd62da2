"""A webhook endpoint on 127.0.0.1 for tests: records every request and answers from a script."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestServer

Action = int | str


class WebhookReceiver:
    """Answers each request with the next `script` entry, then with `default`: an HTTP status,
    "sleep" (200 after 2 s) or "hang" (held until `release` is set, then 200).

    `received[i]` is (lower-cased headers, raw body) of request i and `actions[i]` how it was answered;
    `hanging` counts the requests held right now."""

    def __init__(self) -> None:
        self.script: list[Action] = []
        self.default: Action = 200
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.actions: list[Action] = []
        self.hanging = 0
        self.release = asyncio.Event()
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        action = self.script.pop(0) if self.script else self.default
        self.received.append(({k.lower(): v for k, v in request.headers.items()}, body))
        self.actions.append(action)
        if action == "sleep":
            await asyncio.sleep(2)
            action = 200
        elif action == "hang":
            self.hanging += 1
            try:
                await self.release.wait()
            finally:
                self.hanging -= 1
            action = 200
        return web.Response(status=int(action), text="x" * 5000)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))


@contextlib.asynccontextmanager
async def serve_receiver() -> AsyncIterator[WebhookReceiver]:
    """A receiver at `.url` (POST /hook) until the block ends; held requests are released first."""
    receiver = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    receiver.server = TestServer(app, host="127.0.0.1")
    await receiver.server.start_server()
    try:
        yield receiver
    finally:
        receiver.release.set()
        await receiver.server.close()
