"""In-process time of the analytics page's ClickHouse queries, rollups against raw rows.

    .venv/bin/python bench/web_queries.py [--clicks 1000000] [--runs 5]

The busy link of bench/web.py (same `clicks_sql`: 150k visitors over 90 days, A/B variants a/b)
in a fresh chDB directory with the real schema; then, alternating, each query with the rollups
(ClickHouse migrations 000004/000005) and with `rollups: false` (raw clicks_analytics), for the
page's 30- and 90-day windows (whole hours up to the end of the current hour). Prints min /
median ms per query; the answers of both paths are checked to be equal.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from engine.analytics.queries import analytics_overview, link_ab_variants
from engine.config import load_settings
from engine.db.clickhouse import create_clickhouse_client
from engine.db.clickhouse_schema import apply_clickhouse_schema
from web import clicks_sql

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clicks", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="lr-bench-webq-")
    try:
        client = create_clickhouse_client(load_settings(clickhouse_url=f"chdb://{work}/ch"))
        apply_clickhouse_schema(client)
        link, workspace, rule = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        began = time.perf_counter()
        client.command(clicks_sql(args.clicks, link, workspace, rule, int(time.time())))
        console.print(f"{args.clicks:,} clicks inserted in {time.perf_counter() - began:.1f}s")
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        end = (hour + timedelta(hours=1)).isoformat()
        table = Table(title=f"{args.clicks:,} clicks, {args.runs} runs each (ms)")
        for column in ("query", "rollups min", "rollups median", "raw min", "raw median"):
            table.add_column(column, justify="left" if column == "query" else "right")
        for days in (30, 90):
            params = {"from": (hour - timedelta(days=days)).isoformat(), "to": end, "interval": "day",
                      "tz": "UTC", "workspace_id": workspace, "link_id": link, "limit": 10}  # fmt: skip
            fns: list[tuple[str, Callable[[Any, dict[str, Any]], dict[str, Any]]]] = [
                ("analytics_overview", analytics_overview), ("link_ab_variants", link_ab_variants)
            ]  # fmt: skip
            for name, fn in fns:
                times: dict[bool, list[float]] = {True: [], False: []}
                answers: dict[bool, Any] = {}
                for _ in range(args.runs):
                    for rollups in (True, False):
                        t0 = time.perf_counter()
                        answers[rollups] = fn(client, {**params, "rollups": rollups})
                        times[rollups].append((time.perf_counter() - t0) * 1000)
                assert answers[True] == answers[False], name
                table.add_row(
                    f"{name}, {days} days",
                    *(f"{f(times[r]):.0f}" for r in (True, False) for f in (min, statistics.median)),
                )
        console.print(table)
        client.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
