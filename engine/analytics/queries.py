"""Named ClickHouse analytics queries.

Each query is a plain function of a clickhouse-connect client and raw parameters, which it
validates itself, so the api can run it directly (production, ClickHouse over HTTP) or ask the
worker that owns the embedded chDB engine to run it by name (`linkrift dev`). Every query filters
by workspace_id: tenancy is part of the query, not of the caller.

Counting conventions (docs/analytics.md):
  * the window is half-open, [from, to); naive times and dates are read in the requested tz;
  * unique visitors are exact (uniqExact) over the whole window; an empty visitor_id is not a
    visitor. They are counted over the 16-byte form of the id (`unique_visitors_sql`);
  * human = neither bot nor preview; breakdowns count human clicks; the traffic breakdown splits
    every click into exactly one class: preview, else bot, else human.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickhouse_connect.driver.client import Client

from engine.errors import ValidationFailed
from engine.naming import (
    CH_CLICKS,
    CH_COUNTS_DAILY,
    CH_COUNTS_HOURLY,
    CH_VARIANT_VISITOR_HOURS,
    CH_VISITOR_HOURS,
)
from engine.records import parse_uuid

INTERVALS = ("hour", "day")
MAX_RANGE = timedelta(days=3 * 366)
MIN_YEAR, MAX_YEAR = 1970, 2100  # ClickHouse DateTime starts at the epoch
# Hour buckets are zero-filled, so the window bounds the response size: 92 days = 2208 buckets.
MAX_HOUR_RANGE = timedelta(days=92)
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_EXPORT_ROWS = 100_000
MAX_EXPORT_ROWS = 1_000_000
MAX_PAGE_ROWS = 10_000

# Breakdown name -> clickhouse_analytics column.
DIMENSIONS: dict[str, str] = {
    "country": "country_code",
    "region": "region",
    "city": "city",
    "device_type": "device_type",
    "browser": "browser",
    "os": "os",
    "referer_domain": "referer_domain",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
}
TRAFFIC_CLASSES = ("human", "bot", "preview")

# Raw click export: never ip, user agent or visitor id.
EXPORT_COLUMNS = (
    "clicked_at", "country", "region", "city", "device", "browser", "os", "referer_domain",
    "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "is_bot", "is_preview",
)  # fmt: skip
_EXPORT_SELECT = (
    "country_code, region, city, device_type, browser, os, referer_domain, "
    "utm_source, utm_medium, utm_campaign, utm_term, utm_content, is_bot, is_preview"
)
_HUMAN = "is_bot = 0 AND is_preview = 0"


def unique_visitors_sql(condition: str = "") -> str:
    """Exact count of distinct non-empty visitor ids (of the rows matching `condition`).

    Equal to uniqExact(visitor_id) over non-empty ids, but reads the columns of ClickHouse
    migration 000003: `visitor_bits`, the 32-hex id as a UInt128 (a bijection, NULL for any
    other id), and `visitor_other`, any other non-empty id verbatim ('' otherwise). The two sets
    are disjoint, so their counts add up exactly; hashing a UInt128 is about 3x cheaper than a
    32-character string.
    """
    if not condition:
        return "(uniqExact(visitor_bits) + uniqExactIf(visitor_other, visitor_other != ''))"
    return (
        f"(uniqExactIf(visitor_bits, {condition}) "
        f"+ uniqExactIf(visitor_other, ({condition}) AND visitor_other != ''))"
    )


def parse_tz(value: Any) -> ZoneInfo:
    name = str(value) if value not in (None, "") else "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed("tz must be an IANA time zone such as Europe/Paris", field="tz") from None


def parse_time(value: Any, field: str, tz: ZoneInfo) -> datetime | None:
    """ISO-8601 date or datetime; without an offset it is a wall time in `tz`."""
    if value in (None, ""):
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{field} must be an ISO-8601 date or datetime", field=field) from None
    # Also keeps window arithmetic (`to` minus 30 days, time-zone shifts) clear of datetime's year 1..9999.
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        raise ValidationFailed(f"{field} must be between the years {MIN_YEAR} and {MAX_YEAR}", field=field)
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).astimezone(UTC)


def parse_int(value: Any, field: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise ValidationFailed(f"{field} must be an integer", field=field) from None
    if not low <= number <= high:
        raise ValidationFailed(f"{field} must be between {low} and {high}", field=field)
    return number


@dataclass(frozen=True)
class Window:
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    interval: str
    tz: ZoneInfo

    def as_params(self) -> dict[str, str]:
        """The window as raw parameters again (what a named query accepts)."""
        return {
            "from": self.start.isoformat(), "to": self.end.isoformat(),
            "interval": self.interval, "tz": self.tz.key,
        }  # fmt: skip

    def buckets(self) -> list[str]:
        """Every bucket label of the window in order, so the series can be zero-filled."""
        if self.start >= self.end:
            return []
        local_start = self.start.astimezone(self.tz)
        if self.interval == "day":
            first = local_start.date()
            last = (self.end - timedelta(microseconds=1)).astimezone(self.tz).date()
            return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        # Step whole hours in UTC from the local hour start: correct across DST changes and for
        # zones with half-hour offsets, where a local hour starts at :30 UTC.
        at = local_start.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        labels = []
        while at < self.end:
            labels.append(_hour_label(int(at.timestamp()), self.tz))
            at += timedelta(hours=1)
        return labels


def _hour_label(epoch: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, tz).isoformat()


def parse_window(params: Mapping[str, Any], default_from: datetime | None = None) -> Window:
    """Validate from, to, interval and tz. `to` defaults to now, `from` to `default_from` or 30 days."""
    tz = parse_tz(params.get("tz"))
    end = parse_time(params.get("to"), "to", tz) or datetime.now(UTC)
    default_start = min(default_from, end) if default_from else end - timedelta(days=30)
    start = parse_time(params.get("from"), "from", tz) or default_start
    if start > end:
        raise ValidationFailed("from must not be after to", field="from")
    if end - start > MAX_RANGE:
        raise ValidationFailed("the window may span at most 3 years", field="from")
    interval = params.get("interval") or "day"
    if interval not in INTERVALS:
        raise ValidationFailed("interval must be hour or day", field="interval")
    if interval == "hour" and end - start > MAX_HOUR_RANGE:
        raise ValidationFailed("hour buckets need a window of at most 92 days", field="interval")
    return Window(start, end, str(interval), tz)


def parse_limit(value: Any) -> int:
    return parse_int(value, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)


def _scope(params: Mapping[str, Any], window: Window, *, link_required: bool) -> tuple[str, dict[str, Any]]:
    """WHERE clause and bind parameters: the workspace always, the link when given."""
    bind: dict[str, Any] = {
        "ws": parse_uuid(params.get("workspace_id"), "workspace_id"),
        "start": window.start, "end": window.end, "tz": window.tz.key,
    }  # fmt: skip
    where = (
        "workspace_id = {ws:UUID} "
        "AND clicked_at >= {start:DateTime64(3, 'UTC')} AND clicked_at < {end:DateTime64(3, 'UTC')}"
    )
    if link_required or params.get("link_id") not in (None, ""):
        bind["link"] = parse_uuid(params.get("link_id"), "link_id")
        where += " AND link_id = {link:UUID}"
    return where, bind


def _totals_and_series(
    client: Client, where: str, bind: dict[str, Any], window: Window, *, lean: bool = False
) -> dict[str, Any]:
    """`lean` (the web page): no human unique visitors (one exact count fewer), and the traffic
    split from the same scan as `traffic_clicks`."""
    human_uniques = "0" if lean else unique_visitors_sql(_HUMAN)
    totals = client.query(
        f"""SELECT count(), {unique_visitors_sql()}, {human_uniques},
                   countIf({_HUMAN}), countIf(is_bot = 1), countIf(is_preview = 1),
                   countIf(is_bot = 1 AND is_preview = 0)
            FROM {CH_CLICKS} WHERE {where}""",
        parameters=bind,
    ).result_rows[0]
    # Day buckets come back as local dates, hour buckets as the epoch of the local hour start
    # (unambiguous, also for the repeated hour when DST ends).
    bucket = (
        "toString(toDate(clicked_at, {tz:String}))"
        if window.interval == "day"
        else "toUnixTimestamp(toStartOfHour(clicked_at, {tz:String}))"
    )
    rows = client.query(
        f"""SELECT {bucket} AS t, count(), {unique_visitors_sql()}
            FROM {CH_CLICKS} WHERE {where} GROUP BY t""",
        parameters=bind,
    ).result_rows
    found = {
        (str(t) if window.interval == "day" else _hour_label(int(t), window.tz)): (int(c), int(u))
        for t, c, u in rows
    }
    series = []
    for label in window.buckets():
        clicks, visitors = found.get(label, (0, 0))
        series.append({"t": label, "clicks": clicks, "unique_visitors": visitors})
    return {
        **window.as_params(),
        "clicks": int(totals[0]),
        "unique_visitors": int(totals[1]),
        **({} if lean else {"human_unique_visitors": int(totals[2])}),
        "human_clicks": int(totals[3]),
        "bot_clicks": int(totals[4]),
        "preview_clicks": int(totals[5]),
        **(
            {"traffic_clicks": {"human": int(totals[3]), "bot": int(totals[6]), "preview": int(totals[5])}}
            if lean
            else {}
        ),
        f"clicks_by_{window.interval}": series,
    }


def _breakdowns(
    client: Client, where: str, bind: dict[str, Any], limit: int
) -> dict[str, list[dict[str, Any]]]:
    # One scan for every dimension: each human click becomes one row per dimension, and
    # LIMIT BY keeps the top `limit` values of each. Ties are broken by value, so results are stable.
    pairs = ", ".join(f"('{name}', toString({column}))" for name, column in DIMENSIONS.items())
    rows = client.query(
        f"""SELECT d.1 AS dimension, d.2 AS value, count() AS clicks,
                   {unique_visitors_sql()} AS visitors
            FROM {CH_CLICKS} ARRAY JOIN [{pairs}] AS d
            WHERE {where} AND {_HUMAN}
            GROUP BY dimension, value
            ORDER BY dimension, clicks DESC, value
            LIMIT {{limit:UInt32}} BY dimension""",
        parameters={**bind, "limit": limit},
    ).result_rows
    result: dict[str, list[dict[str, Any]]] = {name: [] for name in DIMENSIONS}
    for dimension, value, clicks, visitors in rows:
        result[str(dimension)].append(
            {"value": str(value), "clicks": int(clicks), "unique_visitors": int(visitors)}
        )
    result["traffic"] = _traffic(client, where, bind)
    return result


def _traffic(client: Client, where: str, bind: dict[str, Any]) -> list[dict[str, Any]]:
    """Every click in exactly one class: preview, else bot, else human."""
    traffic = client.query(
        f"""SELECT multiIf(is_preview = 1, 'preview', is_bot = 1, 'bot', 'human') AS class, count(),
                   {unique_visitors_sql()}
            FROM {CH_CLICKS} WHERE {where} GROUP BY class""",
        parameters=bind,
    ).result_rows
    by_class = {str(c): {"clicks": int(n), "unique_visitors": int(u)} for c, n, u in traffic}
    return [{"value": c, **by_class.get(c, {"clicks": 0, "unique_visitors": 0})} for c in TRAFFIC_CLASSES]


def _breakdown_clicks(
    client: Client, where: str, bind: dict[str, Any], limit: int
) -> dict[str, list[dict[str, Any]]]:
    """Top `limit` values per dimension by human clicks, without per-value visitors: one scan with
    GROUPING SETS on the native columns (exact uniques per value cost ~10x more, see
    docs/performance.md "Web app"). `grouping(...)` is 0 in the bit of the set's own column; the
    other columns are '' in a set's rows, so concatenating them all gives the value (ties by value)."""
    columns = list(DIMENSIONS.values())
    rows = client.query(
        f"""SELECT grouping({", ".join(columns)}) AS g, {", ".join(columns)}, count() AS clicks
            FROM {CH_CLICKS} WHERE {where} AND {_HUMAN}
            GROUP BY GROUPING SETS ({", ".join(f"({c})" for c in columns)})
            ORDER BY g, clicks DESC, concat({", ".join(columns)}) LIMIT {{limit:UInt32}} BY g""",
        parameters={**bind, "limit": limit},
    ).result_rows
    names = list(DIMENSIONS)
    result: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    last = len(columns) - 1
    for mask, *values, clicks in rows:
        index = next(i for i in range(len(columns)) if not (int(mask) >> (last - i)) & 1)
        result[names[index]].append({"value": str(values[index]), "clicks": int(clicks)})
    for entries in result.values():
        entries.sort(key=lambda e: (-e["clicks"], e["value"]))
    return result


HOUR = 3600
# The rollups keep what clicks_analytics keeps (2 years); a window reaching further reads raw rows.
_ROLLUP_HORIZON = timedelta(days=700)


def _whole_hours(window: Window, now: datetime | None = None) -> bool:
    """Both ends of `window` on whole UTC hours, inside the raw table's TTL: the rollups answer it."""
    start, end = window.start.timestamp(), window.end.timestamp()
    return not (start % HOUR or end % HOUR or window.start < (now or datetime.now(UTC)) - _ROLLUP_HORIZON)


def rollup_buckets(window: Window, now: datetime | None = None) -> tuple[int, int, list[int]] | None:
    """(first hour, end hour, bucket of each hour) when the rollups of ClickHouse migration 000004
    answer `window` exactly: both ends on whole UTC hours and every hour of the window inside one
    bucket (the zone's offset is a whole number of hours at every hour start), inside the raw
    table's TTL. Hours count from the epoch; the bucket of hour `first + i` is `buckets[i]`, an index
    into `window.buckets()` from 1. None otherwise: the raw queries answer."""
    if not _whole_hours(window, now):
        return None
    start, end = window.start.timestamp(), window.end.timestamp()
    labels = {label: i for i, label in enumerate(window.buckets(), start=1)}
    first, last = int(start) // HOUR, int(end) // HOUR
    buckets = []
    for hour in range(first, last):
        local = datetime.fromtimestamp(hour * HOUR, window.tz)
        if local.minute or local.second:
            return None  # a half-hour zone: its buckets cut UTC hours
        index = labels.get(local.date().isoformat() if window.interval == "day" else local.isoformat())
        if index is None:
            return None
        buckets.append(index)
    return first, last, buckets


def _bucket_sql(window: Window, first: int, buckets: list[int]) -> str | None:
    """`buckets` as an SQL expression of the hour `{h}` (hours since the epoch): `h - first + 1` for
    hour buckets; for day buckets the local day number, intDiv(h + offset, 24), with the zone's
    offset in hours piecewise constant between its changes (a few per year), less the first day's.
    Cheaper than passing the per-hour list; checked against it, None if they ever differ."""
    if window.interval == "hour":
        expression = f"({{h}} - {first} + 1)"
        check = [hour - first + 1 for hour in range(first, first + len(buckets))]
    else:
        offsets = [
            int((datetime.fromtimestamp(hour * HOUR, window.tz).utcoffset() or timedelta()).total_seconds())
            // HOUR
            for hour in range(first, first + len(buckets))
        ]
        pieces = [(first + i, o) for i, o in enumerate(offsets) if i == 0 or offsets[i - 1] != o]
        day0 = (first + offsets[0]) // 24 if offsets else 0
        check = [(first + i + o) // 24 - day0 + 1 for i, o in enumerate(offsets)]
        branches = ", ".join(
            f"{{h}} < {at}, {prev}" for (at, _), (_, prev) in zip(pieces[1:], pieces, strict=False)
        )
        offset = (
            f"multiIf({branches}, {pieces[-1][1]})" if len(pieces) > 1 else str(pieces[0][1] if pieces else 0)
        )
        expression = f"(intDiv({{h}} + {offset}, 24) - {day0} + 1)"
    if check != buckets:
        return None
    return expression


@functools.lru_cache(maxsize=64)
def _rollup_plan(window: Window) -> tuple[int, int, str] | None:
    """(first hour, end hour, bucket SQL) of `rollup_buckets` and `_bucket_sql`, ignoring the TTL
    horizon (the caller checks it): a pure function of the window that walks every hour of it in
    Python (~16 ms for 90 days), so it is kept for the windows asked again, such as a preset's
    during its hour. Only the small answer is kept, not the per-hour list."""
    found = rollup_buckets(window, now=window.start)
    if found is None:
        return None
    bucket = _bucket_sql(window, found[0], found[2])
    return None if bucket is None else (found[0], found[1], bucket)


def _rollup_overview(
    client: Client, bind: dict[str, Any], window: Window, hours: tuple[int, int], bucket: str, limit: int
) -> dict[str, Any]:
    """`analytics_overview` of one link from the rollups: the same figures as the raw queries.

    Visitors: each visitor's set of click hours (link_visitor_hours) is cut to the window and mapped
    to bucket numbers; a visitor with an hour left counts once for the window (bucket 0) and once in
    each bucket its hours fall in. Clicks: click_counts_hourly summed over the window's hours (per
    bucket and flags for the series and the traffic classes, per value for the breakdowns)."""
    bind = {**bind, "lo": hours[0], "hi": hours[1]}
    hour_bucket = bucket.replace("{h}", "intDiv(toUnixTimestamp(hour), 3600)")
    bucket = bucket.replace("{h}", "h")
    in_window = "arrayFilter(h -> h >= {lo:UInt32} AND h < {hi:UInt32}, hours)"
    visitors = client.query(
        f"""SELECT b, count() FROM (
                SELECT arrayJoin(arrayConcat(
                    arrayDistinct(arrayMap(h -> {bucket}, {in_window})) AS x,
                    if(notEmpty(x), [0], []))) AS b
                FROM {CH_VISITOR_HOURS} FINAL WHERE workspace_id = {{ws:UUID}} AND link_id = {{link:UUID}})
            GROUP BY b""",
        parameters=bind,
    ).result_rows
    bucket_visitors = {int(b): int(n) for b, n in visitors}
    # The breakdowns' whole UTC days inside the window come from click_counts_daily (migration
    # 000005, 24x fewer rows), the hours before the first and after the last whole day from
    # click_counts_hourly, which also gives every hour's flags for the series and the traffic split.
    # A window within one day has first_day >= end_day: all hourly, nothing daily.
    first_day, end_day = -(-hours[0] // 24), hours[1] // 24
    bind.update(dlo=first_day * 86400, dhi=end_day * 86400)
    rows = client.query(
        f"""SELECT dimension, value, b, sum(clicks) FROM (
                SELECT dimension, value, if(dimension = '_flags', {hour_bucket}, 0) AS b, clicks
                FROM {CH_COUNTS_HOURLY}
                WHERE workspace_id = {{ws:UUID}} AND link_id = {{link:UUID}}
                  AND hour >= toDateTime({{lo:UInt32}} * 3600, 'UTC')
                  AND hour < toDateTime({{hi:UInt32}} * 3600, 'UTC')
                  AND (dimension = '_flags' OR hour < toDateTime({{dlo:UInt32}}, 'UTC')
                       OR hour >= toDateTime({{dhi:UInt32}}, 'UTC'))
                UNION ALL
                SELECT dimension, value, 0 AS b, clicks
                FROM {CH_COUNTS_DAILY}
                WHERE workspace_id = {{ws:UUID}} AND link_id = {{link:UUID}}
                  AND day >= toDate(toDateTime({{dlo:UInt32}}, 'UTC'))
                  AND day < toDate(toDateTime({{dhi:UInt32}}, 'UTC')))
            GROUP BY dimension, value, b""",
        parameters=bind,
    ).result_rows
    flags = {"00": 0, "10": 0, "01": 0, "11": 0}
    bucket_clicks: dict[int, int] = {}
    values: dict[str, list[dict[str, Any]]] = {name: [] for name in DIMENSIONS}
    for dimension, value, b, clicks in rows:
        if dimension == "_flags":
            flags[str(value)] += int(clicks)
            bucket_clicks[int(b)] = bucket_clicks.get(int(b), 0) + int(clicks)
        elif dimension in values:
            values[str(dimension)].append({"value": str(value), "clicks": int(clicks)})
    series = [
        {"t": label, "clicks": bucket_clicks.get(i, 0), "unique_visitors": bucket_visitors.get(i, 0)}
        for i, label in enumerate(window.buckets(), start=1)
    ]
    human, preview = flags["00"], flags["01"] + flags["11"]
    traffic = {"human": human, "bot": flags["10"], "preview": preview}
    return {
        **window.as_params(),
        "clicks": sum(flags.values()),
        "unique_visitors": bucket_visitors.get(0, 0),
        "human_clicks": human,
        "bot_clicks": flags["10"] + flags["11"],
        "preview_clicks": preview,
        f"clicks_by_{window.interval}": series,
        "limit": limit,
        "breakdowns": {
            **{name: sorted(entries, key=lambda e: (-e["clicks"], e["value"]))[:limit]
               for name, entries in values.items()},
            "traffic": [{"value": c, "clicks": traffic[c]} for c in TRAFFIC_CLASSES],
        },
    }  # fmt: skip


def analytics_overview(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """The report without the unique counts the web app's page does not show (per breakdown value,
    per traffic class, human visitors): exact totals and series, top-N clicks per dimension, the
    traffic split's clicks. A link's window of whole hours is read from the rollups
    (`rollup_buckets`) unless `rollups` is false; the raw rows answer everything else, with the
    same figures."""
    window = parse_window(params)
    limit = parse_limit(params.get("limit"))
    where, bind = _scope(params, window, link_required=False)
    plan = _rollup_plan(window) if "link" in bind and params.get("rollups", True) else None
    if plan is not None and _whole_hours(window):
        return _rollup_overview(client, bind, window, plan[:2], plan[2], limit)
    report = _totals_and_series(client, where, bind, window, lean=True)
    report["limit"] = limit
    traffic = report.pop("traffic_clicks")
    report["breakdowns"] = {
        **_breakdown_clicks(client, where, bind, limit),
        "traffic": [{"value": c, "clicks": traffic[c]} for c in TRAFFIC_CLASSES],
    }
    return report


def analytics_report(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """Totals, a zero-filled series and top-N breakdowns for a workspace, or one of its links."""
    window = parse_window(params)
    limit = parse_limit(params.get("limit"))
    where, bind = _scope(params, window, link_required=False)
    report = _totals_and_series(client, where, bind, window)
    report["limit"] = limit
    report["breakdowns"] = _breakdowns(client, where, bind, limit)
    return report


def link_timeseries(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """Clicks, uniques (exact over the whole window) and a zero-filled series for one link."""
    window = parse_window(params)
    where, bind = _scope(params, window, link_required=True)
    return _totals_and_series(client, where, bind, window)


def link_clicks_page(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """One page of a link's raw clicks for CSV export, in (clicked_at, event_id) order.

    `after` is the cursor the previous page returned; keyset paging keeps every page an index
    range scan however deep the export goes.
    """
    window = parse_window(params)
    where, bind = _scope(params, window, link_required=True)
    bind["rows"] = parse_int(params.get("rows"), "rows", 1000, 1, MAX_PAGE_ROWS)
    after = params.get("after")
    if after:
        ts, _, event_id = str(after).partition("|")
        where += (
            " AND (clicked_at, event_id) > (toDateTime64({after_ts:String}, 3, 'UTC'), {after_id:String})"
        )
        bind.update(after_ts=ts, after_id=event_id)
    rows = client.query(
        f"""SELECT toString(clicked_at), event_id, {_EXPORT_SELECT}
            FROM {CH_CLICKS} WHERE {where}
            ORDER BY clicked_at, event_id LIMIT {{rows:UInt32}}""",
        parameters=bind,
    ).result_rows
    out = [
        [ts.replace(" ", "T") + "Z", *rest[:-2], bool(rest[-2]), bool(rest[-1])]
        for ts, _event_id, *rest in rows
    ]
    cursor = f"{rows[-1][0]}|{rows[-1][1]}" if len(rows) == bind["rows"] else None
    return {"columns": list(EXPORT_COLUMNS), "rows": out, "next": cursor}


def link_ab_variants(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """Human clicks, unique visitors and returning visitors (two clicks or more in the window) per
    A/B (rule, variant) of one link; engine.analytics.ab turns them into results. A window of whole
    UTC hours is read from the per-visitor rollup unless `rollups` is false (same figures)."""
    window = parse_window(params)
    where, bind = _scope(params, window, link_required=True)
    per_visitor = f"""SELECT rule_id, variant, visitor_id, count() AS n
                  FROM {CH_CLICKS} WHERE {where} AND {_HUMAN} AND variant != ''
                  GROUP BY rule_id, variant, visitor_id"""
    if params.get("rollups", True) and _whole_hours(window):
        # link_variant_visitor_hours (migration 000005): each visitor's human clicks per UTC hour,
        # summed over the window's hours; a visitor without clicks in the window is dropped.
        bind.update(lo=int(window.start.timestamp()) // HOUR, hi=int(window.end.timestamp()) // HOUR)
        per_visitor = f"""SELECT * FROM (
                  SELECT rule_id, variant, visitor_id,
                         arraySum(arrayFilter((c, h) -> h >= {{lo:UInt32}} AND h < {{hi:UInt32}},
                                              hits.2, hits.1)) AS n
                  FROM {CH_VARIANT_VISITOR_HOURS} FINAL
                  WHERE workspace_id = {{ws:UUID}} AND link_id = {{link:UUID}})
                  WHERE n > 0"""
    rows = client.query(
        f"""SELECT rule_id, variant, sum(n), countIf(visitor_id != ''), countIf(visitor_id != '' AND n >= 2)
            FROM ({per_visitor})
            GROUP BY rule_id, variant ORDER BY rule_id, variant""",
        parameters=bind,
    ).result_rows
    return {
        **window.as_params(),
        "variants": [
            {"rule_id": str(r), "variant": str(v), "clicks": int(c), "unique_visitors": int(u),
             "returning_visitors": int(back)}
            for r, v, c, u, back in rows
        ],
    }  # fmt: skip


def link_click_count(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """Row count for one link, all time (used by tests and reconciliation)."""
    link_id = parse_uuid(params.get("link_id"), "link_id")
    n = client.query(
        f"SELECT count(), uniqExact(event_id) FROM {CH_CLICKS} WHERE link_id = {{link:UUID}}",
        parameters={"link": link_id},
    ).result_rows[0]
    return {"rows": int(n[0]), "distinct_events": int(n[1])}


def ping(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    return {"ok": client.command("SELECT 1") == 1}


QUERIES: dict[str, Callable[[Client, dict[str, Any]], dict[str, Any]]] = {
    "analytics_report": analytics_report,
    "analytics_overview": analytics_overview,
    "link_timeseries": link_timeseries,
    "link_clicks_page": link_clicks_page,
    "link_ab_variants": link_ab_variants,
    "link_click_count": link_click_count,
    "ping": ping,
}


def run_named(client: Client, name: str, params: dict[str, Any]) -> dict[str, Any]:
    fn = QUERIES.get(name)
    if fn is None:
        raise ValidationFailed(f"unknown analytics query {name!r}", field="query")
    return fn(client, params)
