"""Named ClickHouse analytics queries.

Each query is a plain function of a clickhouse-connect client and validated parameters, so the
api can run it directly (production, ClickHouse over HTTP) or ask the worker that owns the
embedded chDB engine to run it by name (`linkrift dev`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickhouse_connect.driver.client import Client

from engine.errors import ValidationFailed
from engine.naming import CH_CLICKS

INTERVALS = {"hour": "toStartOfHour", "day": "toStartOfDay"}
MAX_RANGE = timedelta(days=3 * 366)


def _uuid(value: Any, field: str) -> str:
    try:
        return str(UUID(str(value)))
    except ValueError:
        raise ValidationFailed(f"{field} must be a UUID", field=field) from None


def _time(value: Any, field: str, default: datetime) -> datetime:
    if value in (None, ""):
        return default
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{field} must be an ISO-8601 date or datetime", field=field) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def window_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validate the common window parameters: from, to, interval, tz."""
    now = datetime.now(UTC)
    end = _time(params.get("to"), "to", now)
    start = _time(params.get("from"), "from", end - timedelta(days=30))
    if start > end:
        raise ValidationFailed("from must be before to", field="from")
    if end - start > MAX_RANGE:
        raise ValidationFailed("the window may span at most 3 years", field="from")
    interval = params.get("interval") or "day"
    if interval not in INTERVALS:
        raise ValidationFailed("interval must be hour or day", field="interval")
    tz = params.get("tz") or "UTC"
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed("tz must be an IANA time zone", field="tz") from None
    return {"from": start, "to": end, "interval": interval, "tz": str(tz)}


def link_timeseries(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """Clicks, uniques (exact over the whole window) and a time series for one link."""
    link_id = _uuid(params.get("link_id"), "link_id")
    workspace_id = _uuid(params.get("workspace_id"), "workspace_id")
    w = window_params(params)
    bucket = INTERVALS[w["interval"]]
    query_params = {
        "link": link_id, "ws": workspace_id, "start": w["from"], "end": w["to"], "tz": w["tz"],
    }
    where = (
        "workspace_id = {ws:UUID} AND link_id = {link:UUID} "
        "AND clicked_at >= {start:DateTime64(3)} AND clicked_at < {end:DateTime64(3)}"
    )
    totals = client.query(
        f"""SELECT count(), uniqExact(visitor_id), uniqExactIf(visitor_id, is_bot = 0 AND is_preview = 0),
                   countIf(is_bot = 0 AND is_preview = 0), countIf(is_bot = 1), countIf(is_preview = 1)
            FROM {CH_CLICKS} WHERE {where}""",
        parameters=query_params,
    ).result_rows[0]
    series = client.query(
        f"""SELECT {bucket}(clicked_at, {{tz:String}}) AS t, count(), uniqExact(visitor_id)
            FROM {CH_CLICKS} WHERE {where} GROUP BY t ORDER BY t""",
        parameters=query_params,
    ).result_rows
    key = "clicks_by_day" if w["interval"] == "day" else "clicks_by_hour"
    return {
        "from": w["from"].isoformat(),
        "to": w["to"].isoformat(),
        "interval": w["interval"],
        "tz": w["tz"],
        "clicks": int(totals[0]),
        "unique_visitors": int(totals[1]),
        "human_unique_visitors": int(totals[2]),
        "human_clicks": int(totals[3]),
        "bot_clicks": int(totals[4]),
        "preview_clicks": int(totals[5]),
        key: [
            {"t": (t.date().isoformat() if w["interval"] == "day" else t.isoformat()), "clicks": int(c), "unique": int(u)}
            for t, c, u in series
        ],
    }


def link_click_count(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """Row count for one link, all time (used by tests and reconciliation)."""
    link_id = _uuid(params.get("link_id"), "link_id")
    n = client.query(
        f"SELECT count(), uniqExact(event_id) FROM {CH_CLICKS} WHERE link_id = {{link:UUID}}",
        parameters={"link": link_id},
    ).result_rows[0]
    return {"rows": int(n[0]), "distinct_events": int(n[1])}


def ping(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    return {"ok": client.command("SELECT 1") == 1}


QUERIES: dict[str, Callable[[Client, dict[str, Any]], dict[str, Any]]] = {
    "link_timeseries": link_timeseries,
    "link_click_count": link_click_count,
    "ping": ping,
}


def run_named(client: Client, name: str, params: dict[str, Any]) -> dict[str, Any]:
    fn = QUERIES.get(name)
    if fn is None:
        raise ValidationFailed(f"unknown analytics query {name!r}", field="query")
    return fn(client, params)
