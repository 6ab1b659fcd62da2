"""The baseline for bench/redirect.py: a bare aiohttp app answering GET /{code} with a 302.

    .venv/bin/python bench/bare_redirect_app.py PORT [--reuse-port]

Same server stack as `linkrift api` (aiohttp, uvloop, no access log), no work per request.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web

LOCATION = "https://example.com/landing"


async def redirect(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": LOCATION, "Cache-Control": "private, no-store"})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/{code}", redirect)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, reuse_port="--reuse-port" in sys.argv
    )


if __name__ == "__main__":
    main()
