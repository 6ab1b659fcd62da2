"""Link dashboard queries: ClickHouse (chDB, clicks_analytics) versus PostgreSQL (clicks).

    .venv/bin/python bench/analytics.py [--rows 10000000] [--links 1000] [--runs 5]

Loads the same synthetic clicks into both: inside chDB with `INSERT ... SELECT FROM numbers(N)`
into the real schema (clickhouse/*.sql, with its materialized view), and into a fresh migrated
PostgreSQL database with `INSERT ... SELECT FROM generate_series` (the clicks indexes are dropped
for the load and rebuilt with their migration definitions, then VACUUM ANALYZE). One busy link
gets 10% of all clicks over 90 days; the dashboard queries ask for its last 30 days. Each query
runs `--runs` times per engine; the median is reported. Visitor ids are 32 hex characters like
the real ones (engine/clicks/visitor.py): md5 of the visitor number, identical in both engines.
ClickHouse counts uniques the way engine/analytics/queries.py does (`unique_visitors_sql`).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from common import bench_database
from rich.console import Console
from rich.table import Table

from engine.analytics.queries import unique_visitors_sql
from engine.config import load_settings
from engine.db.clickhouse import create_clickhouse_client
from engine.db.clickhouse_schema import apply_clickhouse_schema
from engine.naming import CH_CLICKS

console = Console()
DAY = 86400
SPAN_DAYS = 90
BUSY_LINK = "00000000-0000-4000-8000-000000000000"
BUSY_WORKSPACE = "00000000-0000-4000-8000-000000100000"
COUNTRIES = ["US", "DE", "GB", "FR", "IN", "BR", "CA", "JP", "NL", "ES", "IT", "AU"]
DEVICES = ["desktop", "mobile", "tablet"]
BROWSERS = ["Chrome", "Mobile Safari", "Firefox", "Edge", "Samsung Internet"]
OSES = ["Windows", "iOS", "Android", "Mac OS X", "Linux"]
REFERER_HOSTS = ["", "www.google.com", "t.co", "news.ycombinator.com", "www.facebook.com", "www.reddit.com",
                 "duckduckgo.com", "www.linkedin.com"]  # fmt: skip
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"

# Shared shape of a synthetic click n (same expressions in both dialects where they agree).
# link 0 (the busy one) takes every tenth click, the other clicks spread over links 1..links-1.


def _array(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def ch_insert_sql(rows: int, links: int, ref: int) -> str:
    referers = [f"https://{h}/" if h else "" for h in REFERER_HOSTS]
    return f"""
INSERT INTO {CH_CLICKS} (event_id, clicked_at, link_id, workspace_id, domain, short_code, destination,
    kind, method, ip, user_agent, referer, referer_domain, visitor_id, is_unique, is_bot, is_preview,
    country_code, device_type, browser, os, kafka_partition, kafka_offset)
SELECT
    hex(number) AS event_id,
    toDateTime64({ref} - ((number * 7919) % {SPAN_DAYS * DAY}), 3, 'UTC') AS clicked_at,
    toUUID(concat('00000000-0000-4000-8000-', leftPad(toString(link_num), 12, '0'))) AS link_id,
    toUUID(concat('00000000-0000-4000-8000-', leftPad(toString(100000 + link_num % 10), 12, '0'))) AS workspace_id,
    'lnk.example' AS domain, 'code' AS short_code, 'https://example.com/landing' AS destination,
    'redirect' AS kind, 'GET' AS method,
    concat('203.0.', toString(intDiv(number, 256) % 256), '.', toString(number % 256)) AS ip,
    '{USER_AGENT}' AS user_agent,
    {_array(referers)}[intDiv(number, 13) % {len(referers)} + 1] AS referer,
    {_array(REFERER_HOSTS)}[intDiv(number, 13) % {len(REFERER_HOSTS)} + 1] AS referer_domain,
    lower(hex(MD5(toString((number * 2654435761) % 300000)))) AS visitor_id,
    1 AS is_unique, intDiv(number, 10) % 50 = 7 AS is_bot, 0 AS is_preview,
    {_array(COUNTRIES)}[intDiv(number, 10) % {len(COUNTRIES)} + 1] AS country_code,
    {_array(DEVICES)}[intDiv(number, 7) % {len(DEVICES)} + 1] AS device_type,
    {_array(BROWSERS)}[intDiv(number, 3) % {len(BROWSERS)} + 1] AS browser,
    {_array(OSES)}[intDiv(number, 3) % {len(OSES)} + 1] AS os,
    number % 8 AS kafka_partition, number AS kafka_offset
FROM (SELECT number, if(number % 10 = 0, 0, 1 + number % {links - 1}) AS link_num FROM numbers({rows}))
"""


def pg_insert_sql(start: int, stop: int, links: int, ref: int) -> str:
    referers = [f"https://{h}/" if h else "" for h in REFERER_HOSTS]

    def arr(values: list[str]) -> str:
        return "ARRAY" + _array(values)

    return f"""
INSERT INTO clicks (link_id, workspace_id, clicked_at, visitor_id, ip_address, user_agent, referer,
    country_code, device_type, browser, os, is_bot, kind, event_id)
SELECT
    ('00000000-0000-4000-8000-' || lpad(link_num::text, 12, '0'))::uuid,
    ('00000000-0000-4000-8000-' || lpad((100000 + link_num % 10)::text, 12, '0'))::uuid,
    to_timestamp({ref} - ((n * 7919) % {SPAN_DAYS * DAY})),
    md5(((n * 2654435761) % 300000)::text),
    ('203.0.' || ((n / 256) % 256) || '.' || (n % 256))::inet,
    '{USER_AGENT}',
    ({arr(referers)})[(n / 13) % {len(referers)} + 1],
    ({arr(COUNTRIES)})[(n / 10) % {len(COUNTRIES)} + 1],
    ({arr(DEVICES)})[(n / 7) % {len(DEVICES)} + 1],
    ({arr(BROWSERS)})[(n / 3) % {len(BROWSERS)} + 1],
    ({arr(OSES)})[(n / 3) % {len(OSES)} + 1],
    (n / 10) % 50 = 7,
    'redirect',
    to_hex(n)
FROM (SELECT n, CASE WHEN n % 10 = 0 THEN 0 ELSE 1 + n % {links - 1} END AS link_num
      FROM generate_series({start}::bigint, {stop - 1}::bigint) AS n) AS g
"""


CH_WHERE = (
    "workspace_id = {ws:UUID} AND link_id = {link:UUID} "
    "AND clicked_at >= {start:DateTime64(3)} AND clicked_at < {end:DateTime64(3)}"
)
CH_QUERIES = {
    "totals + uniques": f"SELECT count(), {unique_visitors_sql()} FROM {CH_CLICKS} WHERE {CH_WHERE}",
    "daily series": f"""SELECT toStartOfDay(clicked_at, 'UTC') AS t, count(), {unique_visitors_sql()}
        FROM {CH_CLICKS} WHERE {CH_WHERE} GROUP BY t ORDER BY t""",
    "top countries": f"""SELECT country_code, count() AS c FROM {CH_CLICKS} WHERE {CH_WHERE}
        GROUP BY country_code ORDER BY c DESC LIMIT 10""",
    "top devices": f"""SELECT device_type, count() AS c FROM {CH_CLICKS} WHERE {CH_WHERE}
        GROUP BY device_type ORDER BY c DESC LIMIT 10""",
    "top referers": f"""SELECT referer_domain, count() AS c FROM {CH_CLICKS} WHERE {CH_WHERE}
        GROUP BY referer_domain ORDER BY c DESC LIMIT 10""",
}
PG_WHERE = "link_id = $1 AND clicked_at >= $2 AND clicked_at < $3"
PG_QUERIES = {
    "totals + uniques": f"SELECT COUNT(*), COUNT(DISTINCT visitor_id) FROM clicks WHERE {PG_WHERE}",
    "daily series": f"""SELECT date_trunc('day', clicked_at AT TIME ZONE 'UTC') AS t, COUNT(*), COUNT(DISTINCT visitor_id)
        FROM clicks WHERE {PG_WHERE} GROUP BY t ORDER BY t""",
    "top countries": f"""SELECT country_code, COUNT(*) AS c FROM clicks WHERE {PG_WHERE}
        GROUP BY country_code ORDER BY c DESC LIMIT 10""",
    "top devices": f"""SELECT device_type, COUNT(*) AS c FROM clicks WHERE {PG_WHERE}
        GROUP BY device_type ORDER BY c DESC LIMIT 10""",
    "top referers": f"""SELECT referer, COUNT(*) AS c FROM clicks WHERE {PG_WHERE}
        GROUP BY referer ORDER BY c DESC LIMIT 10""",
}


def _timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median seconds over `runs` calls, and the last result."""
    times = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


async def _timed_async(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


async def _pg_load(conn: asyncpg.Connection, args: argparse.Namespace, ref: int) -> float:
    began = time.perf_counter()
    # Partitions for the past months of the window (the migration creates this month and the next two).
    first = datetime.fromtimestamp(ref - SPAN_DAYS * DAY, UTC).replace(day=1, hour=0, minute=0, second=0)
    month = first
    while month < datetime.fromtimestamp(ref, UTC):
        nxt = (month + timedelta(days=32)).replace(day=1)
        name = f"clicks_{month:%Y_%m}"
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            await conn.execute(
                f"CREATE TABLE {name} PARTITION OF clicks FOR VALUES FROM ('{month.isoformat()}') TO ('{nxt.isoformat()}')"
            )
        month = nxt
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'clicks' AND indexname NOT LIKE '%pkey'"
    )
    for row in indexes:
        await conn.execute(f'DROP INDEX "{row["indexname"]}"')
    await conn.execute("SET maintenance_work_mem = '512MB'")
    chunk = max(1, args.pg_chunk)
    for start in range(0, args.rows, chunk):
        stop = min(args.rows, start + chunk)
        await conn.execute(pg_insert_sql(start, stop, args.links, ref), timeout=None)
        console.print(
            f"  postgres: {stop:,}/{args.rows:,} rows, {time.perf_counter() - began:.0f}s", highlight=False
        )
    loaded = time.perf_counter() - began
    for row in indexes:
        # pg_indexes shows a partitioned index as "ON ONLY clicks", which would skip the partitions.
        await conn.execute(row["indexdef"].replace(" ON ONLY ", " ON ", 1), timeout=None)
    indexed = time.perf_counter() - began
    await conn.execute("VACUUM ANALYZE clicks", timeout=None)
    done = time.perf_counter() - began
    console.print(
        f"postgres load: insert {loaded:.1f}s, {len(indexes)} indexes {indexed - loaded:.1f}s, "
        f"vacuum analyze {done - indexed:.1f}s"
    )
    return done


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="lr-bench-analytics-"))
    try:
        await _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _run(args: argparse.Namespace, work: Path) -> None:
    ref = int(time.time())
    end = datetime.fromtimestamp(ref, UTC)
    start = end - timedelta(days=args.window_days)

    settings = load_settings(clickhouse_url=f"chdb://{work / 'clickhouse'}")
    client = create_clickhouse_client(settings)
    apply_clickhouse_schema(client)
    began = time.perf_counter()
    client.command(ch_insert_sql(args.rows, args.links, ref), settings={"max_insert_threads": 2})
    ch_load = time.perf_counter() - began
    stored = client.command(f"SELECT count() FROM {CH_CLICKS}")
    console.print(f"clickhouse load: {stored:,} rows in {ch_load:.1f}s ({args.rows / ch_load:,.0f} rows/s)")

    ch_params = {"ws": BUSY_WORKSPACE, "link": BUSY_LINK, "start": start, "end": end}
    results: dict[str, dict[str, tuple[float, Any]]] = {"ch": {}, "pg": {}}
    for name, sql in CH_QUERIES.items():
        results["ch"][name] = _timed(
            lambda sql=sql: client.query(sql, parameters=ch_params).result_rows, args.runs
        )
    client.close()

    async with bench_database() as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            pg_load = await _pg_load(conn, args, ref)
            for name, sql in PG_QUERIES.items():
                results["pg"][name] = await _timed_async(
                    lambda sql=sql: conn.fetch(sql, BUSY_LINK, start, end), args.runs
                )
            plan = await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS) " + PG_QUERIES["top countries"], BUSY_LINK, start, end
            )
            busy_rows = await conn.fetchval(
                f"SELECT COUNT(*) FROM clicks WHERE {PG_WHERE}", BUSY_LINK, start, end
            )
            pg_uniques = results["pg"]["totals + uniques"][1][0][1]
        finally:
            await conn.close()

    ch_total, ch_uniques = results["ch"]["totals + uniques"][1][0]
    table = Table(
        title=f"link dashboard, {args.rows:,} clicks; busy link {busy_rows:,} clicks in the last "
        f"{args.window_days} days; median of {args.runs}"
    )
    for column in ("query", "ClickHouse ms", "PostgreSQL ms", "PG / CH"):
        table.add_column(column, justify="left" if column == "query" else "right")
    for name in CH_QUERIES:
        ch_s, pg_s = results["ch"][name][0], results["pg"][name][0]
        table.add_row(name, f"{1000 * ch_s:.1f}", f"{1000 * pg_s:.1f}", f"{pg_s / ch_s:.0f}x")
    ch_sum = sum(v[0] for v in results["ch"].values())
    pg_sum = sum(v[0] for v in results["pg"].values())
    table.add_row(
        "whole dashboard (sum)", f"{1000 * ch_sum:.1f}", f"{1000 * pg_sum:.1f}", f"{pg_sum / ch_sum:.0f}x"
    )
    console.print(table)
    console.print(
        f"load: ClickHouse {ch_load:.1f}s, PostgreSQL {pg_load:.1f}s (insert + indexes + vacuum analyze); "
        f"row counts agree: {int(ch_total) == busy_rows}; unique visitors agree: {int(ch_uniques) == pg_uniques}"
    )
    slowest = max(v[0] for v in results["ch"].values())
    console.print(
        f"targets: ClickHouse ≥ 20x faster per query: "
        f"{'met' if all(results['pg'][n][0] >= 20 * results['ch'][n][0] for n in CH_QUERIES) else 'MISSED'}; "
        f"every ClickHouse query < 200 ms: {'met' if slowest < 0.2 else 'MISSED'} (slowest {1000 * slowest:.0f} ms)"
    )
    console.print(
        "PostgreSQL plan of 'top countries':\n" + "\n".join(r[0] for r in plan),
        highlight=False,
        soft_wrap=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--window-days", type=int, default=30)
    parser.add_argument("--pg-chunk", type=int, default=1_000_000, help="rows per INSERT ... SELECT")
    args = parser.parse_args()
    if args.links < 2:
        parser.error("--links must be at least 2")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
