"""The web app: server-rendered pages under /app (aiohttp-jinja2 + htmx) on the api process.

An adapter like api/: pages call engine services and the same permission table. `setup(app)` is
the one call api/app.py makes; it must run before the redirect catch-all is added.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

HERE = Path(__file__).parent
STATIC_VERSION = "2"


def setup(app: web.Application) -> None:
    from web import account, analytics, bio, core, features, links, pages, workspace

    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = lambda path: f"{core.PREFIX}/static/{path}?v={STATIC_VERSION}"
    env.globals["PREFIX"] = core.PREFIX
    env.globals["RULE_LABELS"] = links.RULE_LABELS
    env.globals["WEEKDAYS"] = links.WEEKDAYS
    env.globals["variant_rows"] = links.variant_rows
    env.filters["rule_summary"] = links.rule_summary
    app.on_response_prepare.append(core.security_headers)
    app.router.add_static(core.PREFIX + "/static", HERE / "static", append_version=False)
    account.add_aliases(app)
    for module in (account, links, workspace, features, bio, pages):
        app.add_routes(module.routes)
    analytics.setup(app)
