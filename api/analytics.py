"""Analytics API: link and workspace reports (JSON or CSV) and the raw clicks CSV export.

History comes from ClickHouse through the named queries of engine.analytics.queries; when
ClickHouse does not answer, the JSON reports degrade to the PostgreSQL summary
(engine.analytics.pg_queries). Every query is scoped to the caller's workspace.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from api.auth import principal
from api.errors import json_response
from api.http import parse_uuid
from api.state import ANALYTICS, KEYS, PG, REDIS
from engine.accounts.repository import Principal
from engine.analytics.ab import VariantCounts, ab_tests
from engine.analytics.pg_queries import link_analytics_summary
from engine.analytics.queries import (
    DEFAULT_EXPORT_ROWS,
    MAX_EXPORT_ROWS,
    MAX_PAGE_ROWS,
    parse_int,
    parse_limit,
    parse_window,
)
from engine.auth.permissions import Action
from engine.errors import LinkRiftError, ServiceUnavailable, ValidationFailed
from engine.links import repository, rule_service
from engine.links.models import StoredLink

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

_REPORT_PARAMS = frozenset({"from", "to", "interval", "tz", "limit", "format"})
_WORKSPACE_PARAMS = _REPORT_PARAMS | {"link_id"}
_EXPORT_PARAMS = frozenset({"from", "to", "tz", "max_rows"})
_AB_PARAMS = frozenset({"from", "to", "tz"})
# Spreadsheet apps run cells starting with these as formulas; utm values and referers are
# attacker-controlled, so such cells are prefixed with a quote (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _check_params(request: web.Request, allowed: frozenset[str]) -> None:
    for name in request.query:
        if name not in allowed:
            raise ValidationFailed(f"unknown parameter {name!r}", field=name)


def _wants_csv(query: Mapping[str, str]) -> bool:
    fmt = query.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise ValidationFailed("format must be json or csv", field="format")
    return fmt == "csv"


async def _owned_link(request: web.Request, who: Principal, link_id: str) -> StoredLink:
    return await owned_link(request.app, who, link_id)


async def owned_link(app: web.Application, who: Principal, link_id: str) -> StoredLink:
    """The caller's live link; LinkNotFound (404) for another workspace's or a missing one."""
    async with app[PG].acquire() as conn:
        return await repository.get_link(conn, who.workspace_id, link_id)


async def _report(
    request: web.Request, who: Principal, link: StoredLink | None, *, fallback: bool
) -> dict[str, Any]:
    return await window_report(request.app, who, link, request.query, fallback=fallback)


async def window_report(
    app: web.Application,
    who: Principal,
    link: StoredLink | None,
    q: Mapping[str, str],
    *,
    fallback: bool,
    query: str = "analytics_report",
) -> dict[str, Any]:
    """The click report of the workspace, or of one of its links, for the window in `q`
    (`analytics_overview`: without per-value unique visitors in the breakdowns)."""
    window = parse_window(q, default_from=link.tracked_since if link is not None else None)
    limit = parse_limit(q.get("limit"))
    link_id = link.id if link is not None else None
    params = {**window.as_params(), "limit": limit, "workspace_id": who.workspace_id, "link_id": link_id}
    try:
        return {"source": "clickhouse", **await app[ANALYTICS].run(query, params)}
    except ServiceUnavailable as exc:
        if not fallback:
            raise
        log.warning("analytics_fallback source=postgres reason=%s", exc.message)
    async with app[PG].acquire() as conn:
        summary = await link_analytics_summary(
            conn, workspace_id=who.workspace_id, link_id=link_id, start=window.start, end=window.end
        )
    # No series or breakdowns: the PostgreSQL copy answers the headline numbers only.
    return {"source": "postgres", "degraded": True, **window.as_params(), **summary}


@routes.get("/api/v1/links/{link_id}/analytics")
async def link_analytics(request: web.Request) -> web.StreamResponse:
    who = await principal(request, Action.ANALYTICS_READ)
    link_id = parse_uuid(request.match_info["link_id"], "link_id")
    _check_params(request, _REPORT_PARAMS)
    if _wants_csv(request.query):
        return await _report_csv(request, who, link_id)
    link = await _owned_link(request, who, link_id)
    return json_response(await link_report(request.app, who, link, request.query))


async def link_report(
    app: web.Application,
    who: Principal,
    link: StoredLink,
    q: Mapping[str, str],
    *,
    query: str = "analytics_report",
) -> dict[str, Any]:
    """The link report: the window's figures plus the live all-time counters and the link's UTM."""
    link_id = link.id
    body = await window_report(app, who, link, q, fallback=True, query=query)
    keys = app[KEYS]
    live = await app[REDIS].mget(keys.realtime_link(link_id), keys.realtime_unique(link_id))
    # Live counters come from the worker's tables (mirrored to Redis within a second); the
    # PostgreSQL columns are the batched, durable copy used when the mirror has expired. Analytics
    # count tracked clicks only: an import's count has no per-click history, so it is reported
    # beside them (imported_clicks), never in them.
    total = int(live[0]) if live[0] is not None else link.tracked_clicks
    unique = int(live[1]) if live[1] is not None else link.unique_clicks
    head = {"link_id": link_id, "total_clicks": total, "unique_clicks": unique, "utm": link_utm(link)}
    return {**head, "imported_clicks": link.imported_clicks, **body}


def link_utm(link: StoredLink) -> dict[str, str | None]:
    """The UTM values the link itself adds to its destination (null when unset)."""
    return {name: value or None for name, value in link.utm.items()}


async def ab_report(
    app: web.Application, who: Principal, link_id: str, q: Mapping[str, str]
) -> dict[str, Any]:
    """Per-variant results of every A/B rule of a link in the window (human clicks)."""
    async with app[PG].acquire() as conn:
        link = await repository.get_link(conn, who.workspace_id, link_id)
        stored = await rule_service.list_rules(conn, who.workspace_id, link_id)
        rules = [r.to_json() for r in stored if r.rule_type == "ab_test"]
    window = parse_window(q, default_from=link.tracked_since)
    params = {**window.as_params(), "workspace_id": who.workspace_id, "link_id": link_id}
    result = await app[ANALYTICS].run("link_ab_variants", params)
    counts = [VariantCounts(**row) for row in result["variants"]]
    span = {key: value for key, value in window.as_params().items() if key != "interval"}
    return {"link_id": link_id, **span, "measure": "return_rate", "tests": ab_tests(rules, counts)}


@routes.get("/api/v1/links/{link_id}/analytics/ab")
async def link_ab_results(request: web.Request) -> web.StreamResponse:
    who = await principal(request, Action.ANALYTICS_READ)
    link_id = parse_uuid(request.match_info["link_id"], "link_id")
    _check_params(request, _AB_PARAMS)
    return json_response(await ab_report(request.app, who, link_id, request.query))


@routes.get("/api/v1/links/{link_id}/analytics.csv")
async def link_analytics_csv(request: web.Request) -> web.StreamResponse:
    who = await principal(request, Action.ANALYTICS_READ)
    link_id = parse_uuid(request.match_info["link_id"], "link_id")
    _check_params(request, _REPORT_PARAMS - {"format"})
    return await _report_csv(request, who, link_id)


@routes.get("/api/v1/analytics")
async def workspace_analytics(request: web.Request) -> web.StreamResponse:
    who = await principal(request, Action.ANALYTICS_READ)
    _check_params(request, _WORKSPACE_PARAMS)
    raw_link = request.query.get("link_id")
    link = await _owned_link(request, who, parse_uuid(raw_link, "link_id")) if raw_link else None
    if _wants_csv(request.query):
        report = await _report(request, who, link, fallback=False)
        return csv_response(report_rows(report), "workspace-analytics.csv")
    report = await _report(request, who, link, fallback=True)
    return json_response({"workspace_id": who.workspace_id, **report})


async def _report_csv(request: web.Request, who: Principal, link_id: str) -> web.Response:
    link = await _owned_link(request, who, link_id)
    report = await _report(request, who, link, fallback=False)
    return csv_response(report_rows(report), f"link-{link_id}-analytics.csv")


def report_rows(report: dict[str, Any]) -> Iterable[list[Any]]:
    """One table for the whole report: section, dimension, value, clicks, unique_visitors."""
    yield ["section", "dimension", "value", "clicks", "unique_visitors"]
    yield ["total", "", "", report["clicks"], report["unique_visitors"]]
    interval = report["interval"]
    for bucket in report[f"clicks_by_{interval}"]:
        yield ["series", interval, bucket["t"], bucket["clicks"], bucket["unique_visitors"]]
    for dimension, entries in report["breakdowns"].items():
        for entry in entries:
            yield ["breakdown", dimension, entry["value"], entry["clicks"], entry["unique_visitors"]]


def csv_response(rows: Iterable[list[Any]], filename: str) -> web.Response:
    return web.Response(
        text=_csv_text(rows),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _csv_text(rows: Iterable[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@routes.get("/api/v1/links/{link_id}/clicks.csv")
async def link_clicks_csv(request: web.Request) -> web.StreamResponse:
    """Raw clicks (never IP, user agent or visitor id), streamed page by page, at most max_rows."""
    who = await principal(request, Action.ANALYTICS_READ)
    link_id = parse_uuid(request.match_info["link_id"], "link_id")
    _check_params(request, _EXPORT_PARAMS)
    max_rows = parse_int(request.query.get("max_rows"), "max_rows", DEFAULT_EXPORT_ROWS, 1, MAX_EXPORT_ROWS)
    link = await _owned_link(request, who, link_id)
    window = parse_window(request.query, default_from=link.tracked_since)
    analytics = request.app[ANALYTICS]
    scope = {**window.as_params(), "workspace_id": who.workspace_id, "link_id": link_id}

    async def page(after: str | None, rows: int) -> dict[str, Any]:
        return await analytics.run("link_clicks_page", {**scope, "rows": rows, "after": after})

    # The first page is read before the headers go out, so an unavailable ClickHouse is a 503.
    result = await page(None, min(MAX_PAGE_ROWS, max_rows))
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="link-{link_id}-clicks.csv"',
        }
    )
    await resp.prepare(request)
    await resp.write(_csv_text([result["columns"]]).encode())
    sent = 0
    while True:
        rows = result["rows"][: max_rows - sent]
        await resp.write(_csv_text(rows).encode())
        sent += len(rows)
        if sent >= max_rows or not result["next"]:
            break
        try:
            result = await page(result["next"], min(MAX_PAGE_ROWS, max_rows - sent))
        except LinkRiftError as exc:
            # Headers are gone: abort, so the client sees a broken transfer, not a short file
            # that looks complete.
            log.warning("clicks_export_aborted link_id=%s rows=%s reason=%s", link_id, sent, exc.message)
            if request.transport is not None:
                request.transport.abort()
            return resp
    await resp.write_eof()
    return resp
