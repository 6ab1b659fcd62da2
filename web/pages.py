"""Small pages that need no module of their own (the placeholder for sections still to come)."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
