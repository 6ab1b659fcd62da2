"""Server time of the web app's heaviest pages, against the API calls that fetch the same data.

    .venv/bin/python bench/web.py [--links 10000] [--clicks 1000000] [--requests 60]

A migrated PostgreSQL database gets one workspace with `--links` links (plain SQL); one busy link
(created 90 days ago, with an A/B rule) gets `--clicks` clicks over those 90 days in embedded
chDB (`INSERT ... SELECT FROM numbers(N)` in a child process: only one process may open a chDB
directory). Then `linkrift api` runs with LINKRIFT_ANALYTICS_VIA_WORKER=false (it owns chDB), a
session signs in through the login form, and each URL is requested `--requests` times one after
the other on loopback, round-robin across the URLs so they share the machine's load; latency is
from request to the last byte at the client. Baselines from the same run: /healthz, and the
/api/v1 JSON call that reads the same data as each page. The analytics page loads its A/B section
with htmx after it is shown; that fragment is measured on its own row.

Targets (issue 14): links page p95 < 100 ms with 10,000 links, analytics page p95 < 300 ms with
1,000,000 clicks.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from common import (
    LINKRIFT,
    REPO,
    bench_database,
    free_ports,
    platform_env,
    redis_namespace,
    start_process,
    tansu,
    wait_http,
)
from rich.console import Console
from rich.table import Table

from cli.procs import ManagedProcess

console = Console()
DAY = 86400
SPAN_DAYS = 90
PASSWORD = "bench password 14"
COUNTRIES = ["US", "DE", "GB", "FR", "IN", "BR", "CA", "JP", "NL", "ES", "IT", "AU"]
DEVICES = ["desktop", "mobile", "tablet"]
BROWSERS = ["Chrome", "Mobile Safari", "Firefox", "Edge", "Samsung Internet"]
OSES = ["Windows", "iOS", "Android", "Mac OS X", "Linux"]
REFERERS = ["", "www.google.com", "t.co", "news.ycombinator.com", "www.facebook.com", "www.reddit.com"]
CITIES = ["New York", "Berlin", "London", "Paris", "Mumbai", "São Paulo", "Toronto", "Tokyo"]


def _array(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def clicks_sql(rows: int, link_id: str, workspace_id: str, rule_id: str, ref: int) -> str:
    """`rows` clicks of one link over the 90 days before `ref`, 150k visitors, A/B variants a/b."""
    return f"""
INSERT INTO clicks_analytics (event_id, clicked_at, link_id, workspace_id, domain, short_code,
    destination, rule_id, variant, kind, method, ip, user_agent, referer, referer_domain, visitor_id,
    is_unique, is_bot, is_preview, country_code, region, city, device_type, browser, os, utm_source,
    utm_medium, utm_campaign, kafka_partition, kafka_offset)
SELECT
    hex(number), toDateTime64({ref} - ((number * 7919) % {SPAN_DAYS * DAY}), 3, 'UTC'),
    toUUID('{link_id}'), toUUID('{workspace_id}'), '', 'busy', 'https://example.com/landing',
    '{rule_id}', if(visitor % 2 = 0, 'a', 'b'), 'redirect', 'GET', '', 'Mozilla/5.0',
    '', {_array(REFERERS)}[intDiv(number, 13) % {len(REFERERS)} + 1],
    lower(hex(MD5(toString(visitor)))), 1, intDiv(number, 10) % 50 = 7, intDiv(number, 10) % 97 = 3,
    {_array(COUNTRIES)}[intDiv(number, 10) % {len(COUNTRIES)} + 1], '',
    {_array(CITIES)}[intDiv(number, 7) % {len(CITIES)} + 1],
    {_array(DEVICES)}[intDiv(number, 7) % {len(DEVICES)} + 1],
    {_array(BROWSERS)}[intDiv(number, 3) % {len(BROWSERS)} + 1],
    {_array(OSES)}[intDiv(number, 11) % {len(OSES)} + 1],
    ['newsletter', 'twitter', ''][number % 3 + 1], '', '', 0, number
FROM (SELECT number, (number * 2654435761) % 150000 AS visitor FROM numbers({rows}))"""


def load_clickhouse(directory: str, rows: int, link_id: str, workspace_id: str, rule_id: str) -> None:
    """Child-process entry point: schema and clicks into the chDB directory, then exit (closing it)."""
    from engine.config import load_settings
    from engine.db.clickhouse import create_clickhouse_client
    from engine.db.clickhouse_schema import apply_clickhouse_schema

    client = create_clickhouse_client(load_settings(clickhouse_url=f"chdb://{directory}"))
    apply_clickhouse_schema(client)
    client.command(clicks_sql(rows, link_id, workspace_id, rule_id, int(time.time())))
    print(client.command("SELECT count() FROM clicks_analytics"))
    client.close()


async def seed(dsn: str, links: int) -> dict[str, str]:
    """A user with a password, a workspace, an API key and `links` links; one busy link with an A/B rule."""
    from engine.accounts.repository import create_api_key, create_user, create_workspace
    from engine.auth.api_key_tokens import SCOPES
    from engine.auth.passwords import hash_password

    email = f"bench-{uuid.uuid4().hex[:8]}@example.test"
    conn = await asyncpg.connect(dsn)
    try:
        user_id = await create_user(conn, email, hash_password(PASSWORD), "Bench")
        await conn.execute("UPDATE users SET email_verified_at = now() WHERE id = $1", user_id)
        workspace_id = await create_workspace(conn, user_id, "Bench workspace")
        _, key = await create_api_key(
            conn, user_id=user_id, workspace_id=workspace_id, name="bench", scopes=sorted(SCOPES)
        )
        await conn.execute(
            """INSERT INTO links (user_id, workspace_id, url, short_code, title, created_at)
               SELECT $1, $2, 'https://example.com/page/' || n, 'b' || n, 'Bench link ' || n,
                      now() - make_interval(secs => n * 60)
               FROM generate_series(1, $3) AS n""",
            user_id,
            workspace_id,
            links - 1,
        )
        busy = await conn.fetchval(
            """INSERT INTO links (user_id, workspace_id, url, short_code, title, created_at,
                                  utm_source, utm_medium, utm_campaign)
               VALUES ($1, $2, 'https://example.com/landing', 'busy', 'The busy link',
                       now() - interval '91 days', 'newsletter', 'email', 'bench')
               RETURNING id::text""",
            user_id,
            workspace_id,
        )
        rule = await conn.fetchval(
            """INSERT INTO link_rules (link_id, rule_type, conditions, destination_url)
               VALUES ($1, 'ab_test', $2::jsonb, '') RETURNING id::text""",
            busy,
            '{"variants": [{"id": "a", "url": "https://a.example/", "weight": 1},'
            ' {"id": "b", "url": "https://b.example/", "weight": 1}]}',
        )
        await conn.execute("ANALYZE links")
    finally:
        await conn.close()
    return {
        "email": email,
        "workspace_id": workspace_id,
        "api_key": key.plaintext,
        "busy": busy,
        "rule": rule,
    }


async def sign_in(http: aiohttp.ClientSession, base: str, email: str) -> None:
    async with http.get(f"{base}/app/login") as resp:
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', await resp.text())
    assert token, "no CSRF token on the login page"
    form = {"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
    async with http.post(f"{base}/app/login", data=form, allow_redirects=False) as resp:
        assert resp.status == 303, f"login answered {resp.status}"


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    check: str = ""  # text the body must contain
    times: list[float] = field(default_factory=list)


async def measure(http: aiohttp.ClientSession, targets: list[Target], requests: int, warmup: int) -> None:
    for round_ in range(warmup + requests):
        for target in targets:
            began = time.perf_counter()
            async with http.get(target.url, headers=target.headers, allow_redirects=False) as resp:
                body = await resp.text()
            elapsed = time.perf_counter() - began
            assert resp.status == 200, f"{target.name}: HTTP {resp.status} {body[:300]}"
            assert target.check in body, f"{target.name}: {target.check!r} not in the answer"
            if round_ >= warmup:
                target.times.append(elapsed * 1000)
            elif round_ == 0:
                console.print(f"first request: {target.name} {elapsed * 1000:.0f} ms")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="lr-bench-web-"))
    try:
        await _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _run(args: argparse.Namespace, work: Path) -> None:
    async with (
        bench_database() as dsn,
        redis_namespace() as (namespace, _redis),
        tansu(work / "tansu") as broker,
    ):
        who = await seed(dsn, args.links)
        chdb_dir = work / "data" / "clickhouse"
        began = time.perf_counter()
        argv = [sys.executable, __file__, "--load-clickhouse", str(chdb_dir), str(args.clicks), who["busy"],
                who["workspace_id"], who["rule"]]  # fmt: skip
        loaded = await asyncio.to_thread(
            subprocess.run, argv, cwd=REPO, check=True, capture_output=True, text=True
        )
        console.print(
            f"seeded {args.links:,} links; clickhouse: {int(loaded.stdout.split()[-1]):,} clicks of the busy "
            f"link in {time.perf_counter() - began:.1f}s"
        )
        (port,) = free_ports(1)
        env = platform_env(
            database_url=dsn, namespace=namespace, broker_url=broker.url, data_dir=work / "data"
        )
        env.update(LINKRIFT_ANALYTICS_VIA_WORKER="false", CLICKHOUSE_URL=f"chdb://{chdb_dir}")
        api: ManagedProcess = start_process("api", [LINKRIFT, "api", "--port", str(port)], work, env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz", 60, api)
            # unsafe=True: keep cookies set by an IP address (127.0.0.1).
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                await sign_in(http, base, who["email"])
                key = {"Authorization": f"Bearer {who['api_key']}"}
                busy = who["busy"]
                # The API's window for the page's "Last 90 days" (every click of the busy link).
                start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - SPAN_DAYS * DAY))
                targets = [
                    Target("baseline: /healthz", f"{base}/healthz"),
                    Target("links page (/app/links)", f"{base}/app/links", check="Bench link 1<"),
                    Target("api: GET /api/v1/links", f"{base}/api/v1/links?limit=25", key, check='"b1"'),
                    Target(
                        "analytics page, 30 days (default)",
                        f"{base}/app/links/{busy}/analytics",
                        check="Clicks per day",
                    ),
                    Target(
                        "analytics page, 90 days (all clicks)",
                        f"{base}/app/links/{busy}/analytics?range=90d",
                        check="Clicks per day",
                    ),
                    Target(
                        "A/B section (htmx fragment), 90 days",
                        f"{base}/app/links/{busy}/analytics/ab?range=90d",
                        check="Chance to be best",
                    ),
                    Target(
                        "api: link report, 90 days", f"{base}/api/v1/links/{busy}/analytics?from={start}", key
                    ),
                    Target(
                        "api: A/B results, 90 days",
                        f"{base}/api/v1/links/{busy}/analytics/ab?from={start}",
                        key,
                    ),
                ]
                await measure(http, targets, args.requests, args.warmup)
        finally:
            api.stop()
    table = Table(title=f"web app server time: {args.links:,} links, {args.clicks:,} clicks on one link; "
                  f"{args.requests} sequential requests per row after {args.warmup} warm-up")  # fmt: skip
    for column in ("URL", "p50 ms", "p95 ms", "max ms"):
        table.add_column(column, justify="left" if column == "URL" else "right")
    for t in targets:
        table.add_row(
            t.name, f"{statistics.median(t.times):.1f}", f"{p95(t.times):.1f}", f"{max(t.times):.1f}"
        )
    console.print(table)
    links_p95 = p95(targets[1].times)
    analytics_p95 = max(p95(targets[3].times), p95(targets[4].times))
    console.print(
        f"targets: links page p95 < 100 ms: {'met' if links_p95 < 100 else 'MISSED'} ({links_p95:.0f} ms); "
        f"analytics page p95 < 300 ms: {'met' if analytics_p95 < 300 else 'MISSED'} ({analytics_p95:.0f} ms)"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load-clickhouse":
        directory, rows, link_id, workspace_id, rule_id = sys.argv[2:7]
        load_clickhouse(directory, int(rows), link_id, workspace_id, rule_id)
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--links", type=int, default=10_000)
    parser.add_argument("--clicks", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
