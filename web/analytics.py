"""Analytics pages: one link (/app/links/{id}/analytics) and the workspace (/app/analytics), their
CSV downloads and the live click stream for a signed-in browser (SSE).

The figures are the API's own (api.analytics: the same named ClickHouse queries, the PostgreSQL
fallback, the A/B results); the page renders them server-side and hands the series and the live
stream's address to web/static/analytics.js through data-* attributes (the CSP allows no inline
script). See docs/web.md, "Analytics".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, available_timezones

import aiohttp_jinja2
from aiohttp import web

from api.analytics import ab_report, csv_response, link_report, owned_link, report_rows, window_report
from api.stream import stream_clicks
from engine.analytics.queries import DIMENSIONS
from engine.auth.permissions import Action
from engine.errors import LinkNotFound, ServiceUnavailable, ValidationFailed
from engine.links.models import StoredLink
from engine.records import parse_uuid
from web.core import PREFIX, Ctx, page, render

routes = web.RouteTableDef()
OVERVIEW = "analytics_overview"  # the report without per-value visitors (docs/web.md, "Analytics")

_PAGE_PARAMS = ("from", "to", "interval", "tz")
# Presets of the period picker: label, days back from now, bucket.
PRESETS = (("24h", "Last 24 hours", 1, "hour"), ("7d", "Last 7 days", 7, "day"),
           ("30d", "Last 30 days", 30, "day"), ("90d", "Last 90 days", 90, "day"))  # fmt: skip
# A link younger than this opens on hour buckets from its creation: a day chart of a new link is one bar.
_YOUNG = timedelta(days=2)
BREAKDOWN_TITLES = {
    "country": "Countries", "region": "Regions", "city": "Cities", "device_type": "Devices",
    "browser": "Browsers", "os": "Operating systems", "referer_domain": "Referrers",
    "utm_source": "UTM source", "utm_medium": "UTM medium", "utm_campaign": "UTM campaign",
}  # fmt: skip
TIME_ZONES = sorted(available_timezones() - {"localtime", "Factory"})


def _query(request: web.Request, *, default_from: datetime | None) -> dict[str, str]:
    """The report parameters of the page: what the form sent, else a preset, else the defaults."""
    q = request.query
    out = {name: q[name] for name in _PAGE_PARAMS if q.get(name)}
    preset = next((p for p in PRESETS if p[0] == q.get("range")), None)
    if "from" in out:
        return out
    # A preset or the default runs from a whole hour to the end of the current hour (no click is
    # stamped later than now), so a link's page is read from the hourly rollups
    # (engine.analytics.queries.rollup_buckets) rather than from every raw click.
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    if preset is not None:
        start = hour - timedelta(days=preset[2])
        out.setdefault("interval", preset[3])
    elif default_from is not None and now - default_from < _YOUNG:
        start = default_from.replace(minute=0, second=0, microsecond=0)
        out.setdefault("interval", "hour")
    else:
        start = hour - timedelta(days=30)
    out["from"] = start.isoformat(timespec="seconds")
    out.setdefault("to", (hour + timedelta(hours=1)).isoformat(timespec="seconds"))
    return out


def _series(report: Mapping[str, Any]) -> dict[str, Any]:
    """The series for the chart: bucket starts as unix seconds, clicks and visitors."""
    interval = report["interval"]
    tz = ZoneInfo(report["tz"])
    xs, clicks, visitors = [], [], []
    for bucket in report.get(f"clicks_by_{interval}", []):
        if interval == "day":
            start = datetime.fromisoformat(bucket["t"]).replace(tzinfo=tz)
        else:
            start = datetime.fromisoformat(bucket["t"])
        xs.append(int(start.timestamp()))
        clicks.append(bucket["clicks"])
        visitors.append(bucket["unique_visitors"])
    return {"interval": interval, "tz": report["tz"], "x": xs, "clicks": clicks, "visitors": visitors}


def _form_values(q: Mapping[str, str], report: Mapping[str, Any] | None) -> dict[str, str]:
    """What the period form shows: the request's own values, else the window that was used."""
    tz = q.get("tz") or (report or {}).get("tz") or "UTC"
    values = {"tz": tz, "interval": q.get("interval") or (report or {}).get("interval") or "day"}
    for name in ("from", "to"):
        raw = q.get(name) or ((report or {}).get(name) if name == "from" or q.get("to") else "")
        if raw:
            try:
                values[name] = datetime.fromisoformat(raw).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")
            except (ValueError, KeyError):
                values[name] = raw
        else:
            values[name] = ""
    values["range"] = q.get("range", "")
    return values


def _is_live(q: Mapping[str, str]) -> bool:
    """Live increments only make sense when the window runs up to now."""
    return not q.get("to")


async def _page_data(
    request: web.Request, ctx: Ctx, link: StoredLink | None
) -> tuple[dict[str, Any] | None, str | None]:
    """(report, error message): a bad period or an unavailable store is a sentence on the page."""
    who = ctx.principal
    params = _query(request, default_from=link.tracked_since if link is not None else None)
    try:
        if link is None:
            report = await window_report(request.app, who, None, params, fallback=True, query=OVERVIEW)
        else:
            report = await link_report(request.app, who, link, params, query=OVERVIEW)
    except ServiceUnavailable as exc:
        return None, f"Analytics are unavailable right now ({exc.message}). Try again in a minute."
    except ValidationFailed as exc:
        return None, exc.message
    return report, None


def _context(request: web.Request, report: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    q = request.query
    breakdowns = (report or {}).get("breakdowns") or {}
    return {
        "report": report,
        "error": error,
        "form": _form_values(q, report),
        "presets": PRESETS,
        "time_zones": TIME_ZONES,
        "series": _series(report) if report and report.get("source") == "clickhouse" else None,
        "breakdowns": [(name, BREAKDOWN_TITLES[name], breakdowns.get(name, [])) for name in DIMENSIONS],
        "traffic": {e["value"]: e["clicks"] for e in breakdowns.get("traffic", [])},
        "live": _is_live(q),
        "csv_query": "&".join(f"{k}={v}" for k, v in _report_query(report).items()),
    }


def _report_query(report: Mapping[str, Any] | None) -> dict[str, str]:
    if not report:
        return {}
    return {name: quote(str(report[name]), safe="") for name in _PAGE_PARAMS if report.get(name)}


@routes.get(PREFIX + "/analytics")
@page(action=Action.ANALYTICS_READ)
async def workspace_analytics(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    report, error = await _page_data(request, ctx, None)
    return render(
        request, "analytics/workspace.html", {"title": "Analytics", **_context(request, report, error)}
    )


@routes.get(PREFIX + "/links/{link_id}/analytics")
@page(action=Action.ANALYTICS_READ)
async def link_analytics(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    link = await owned_link(request.app, ctx.principal, _link_id(request))
    report, error = await _page_data(request, ctx, link)
    context = {"title": f"Analytics · {link.short_code}", "link": link, **_context(request, report, error)}
    return render(request, "analytics/link.html", context)


@routes.get(PREFIX + "/links/{link_id}/analytics/ab")
@page(action=Action.ANALYTICS_READ)
async def link_ab(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """The A/B section, fetched by htmx once the page is shown (it groups every visitor of the
    window, the page's most expensive query, so it does not hold the page back)."""
    link = await owned_link(request.app, ctx.principal, _link_id(request))
    params = _query(request, default_from=link.tracked_since)
    ab: dict[str, Any] | None = None
    error = None
    try:
        ab = await ab_report(request.app, ctx.principal, link.id, params)
    except ServiceUnavailable:
        error = "A/B results need ClickHouse, which is not answering right now."
    except ValidationFailed as exc:
        error = exc.message
    return render(request, "analytics/_ab.html", {"ab": ab, "ab_error": error})


def _link_id(request: web.Request) -> str:
    try:
        return parse_uuid(request.match_info["link_id"], "link_id")
    except ValidationFailed:
        raise LinkNotFound("link not found") from None


@routes.get(PREFIX + "/analytics.csv")
@page(action=Action.ANALYTICS_READ)
async def workspace_csv(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    params = _query(request, default_from=None)
    report = await window_report(request.app, ctx.principal, None, params, fallback=False)
    return csv_response(report_rows(report), "workspace-analytics.csv")


@routes.get(PREFIX + "/links/{link_id}/analytics.csv")
@page(action=Action.ANALYTICS_READ)
async def link_csv(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    link = await owned_link(request.app, ctx.principal, _link_id(request))
    params = _query(request, default_from=link.tracked_since)
    report = await window_report(request.app, ctx.principal, link, params, fallback=False)
    return csv_response(report_rows(report), f"link-{link.short_code}-analytics.csv")


@routes.get(PREFIX + "/stream/clicks")
@page(action=Action.ANALYTICS_READ)
async def live_clicks(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """The API's click stream (same Redis feed, same checks) for the browser's session."""
    return await stream_clicks(request, ctx.principal)


def percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def chance(probability: float) -> str:
    """A probability as a percentage that never claims a certainty it cannot have (0 % or 100 %)."""
    if probability < 0.0005:
        return "<0.1%"
    if probability >= 0.9995:
        return ">99.9%"
    return percent(probability)


def setup(app: web.Application) -> None:
    filters = aiohttp_jinja2.get_env(app).filters
    filters["percent"] = percent
    filters["chance"] = chance
    app.add_routes(routes)
