"""Click enrichment throughput: ClickEnricher.enrich versus a decode-and-construct baseline.

    .venv/bin/python bench/enrich.py [--clicks 200000] [--uas 2000] [--ips 5000] [--max-seconds 60]

Synthetic raw clicks draw from a pool of user agents and IPs (heavy repetition, as in real
traffic); a last phase gives every click a new UA and IP to show the cache-miss cost.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from engine.clicks import bots
from engine.clicks.enrich import ClickEnricher
from engine.clicks.geo import GeoResolver
from engine.clicks.models import EnrichedClick, RawClick
from engine.clicks.useragent import parse_user_agent, resolver_name
from engine.clicks.visitor import VisitorIdFactory

_UA_TEMPLATES = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{a}.0.{b}.{c} Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{c}) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/{m}.{c} Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS {m}_{c} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/{m}.{c} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS {m}_{c} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/{m}.{c} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android {d}; SM-S9{b}B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{a}.0.{b}.{c} Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android {d}; SM-X{b}) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{a}.0.{b}.{c} Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{a}.0) Gecko/20100101 Firefox/{a}.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{a}.0.0.0 Safari/537.36 Edg/{a}.0.{b}.{c}",
    "Mozilla/5.0 (compatible; Googlebot/2.{c}; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.{c}; +http://www.bing.com/bingbot.htm)",
    "curl/8.{c}.{d}",
    "python-requests/2.{a}.{c}",
    "Slackbot-LinkExpanding 1.{c} (+https://api.slack.com/robots)",
    "facebookexternalhit/1.{c} (+http://www.facebook.com/externalhit_uatext.php)",
    "WhatsApp/2.{a}.{b}.{c} A",
)
_REFERERS = ("", "", "https://www.google.com/", "https://t.co/abc", "https://news.ycombinator.com/item?id=1")
_LANGUAGES = ("", "en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr", "pt_BR")


def _user_agents(rng: random.Random, count: int) -> list[str]:
    return [
        rng.choice(_UA_TEMPLATES).format(
            a=rng.randint(90, 130), b=rng.randint(1000, 6999), c=rng.randint(0, 9), d=rng.randint(8, 14),
            m=rng.randint(12, 17),
        )
        for _ in range(count)
    ]  # fmt: skip


def _ips(rng: random.Random, count: int) -> list[str]:
    ips = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.05:
            ips.append(f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}")
        elif roll < 0.15:
            ips.append(str(ipaddress.IPv6Address((0x2A00_1450 << 96) | rng.getrandbits(96))))
        else:
            ips.append(str(ipaddress.IPv4Address(rng.randint(0x0100_0000, 0xDF00_0000))))
    return ips


def _payloads(rng: random.Random, count: int, uas: list[str], ips: list[str]) -> list[bytes]:
    return [
        RawClick(
            event_id=f"{i:032x}", ts=1714600000.0 + i, link_id=f"link-{i % 500}", workspace_id="ws-1",
            domain="lnk.example", short_code="abc123", destination="https://example.com/landing",
            method="HEAD" if i % 97 == 0 else "GET", ip=rng.choice(ips), user_agent=rng.choice(uas),
            referer=rng.choice(_REFERERS), accept_language=rng.choice(_LANGUAGES),
            visitor_id="" if i % 10 == 0 else f"{i:032x}",
            utm={"utm_source": "newsletter", "utm_campaign": "spring"} if i % 3 == 0 else {},
        ).dumps()
        for i in range(count)
    ]  # fmt: skip


def _passthrough(raw: RawClick, is_unique: bool) -> EnrichedClick:
    """The baseline: the same decode and output construction with nothing derived."""
    return EnrichedClick(
        event_id=raw.event_id, ts=raw.ts, link_id=raw.link_id, workspace_id=raw.workspace_id,
        domain=raw.domain, short_code=raw.short_code, destination=raw.destination, rule_id=raw.rule_id,
        variant=raw.variant, kind=raw.kind, method=raw.method, ip=raw.ip, user_agent=raw.user_agent,
        referer=raw.referer, referer_domain="", language="", visitor_id=raw.visitor_id,
        is_unique=is_unique, is_bot=False, is_preview=False,
    )  # fmt: skip


def _run(
    name: str, payloads: list[bytes], step: Callable[[RawClick, bool], EnrichedClick], max_seconds: float
) -> tuple[int, float]:
    """Clicks processed and seconds taken, stopping early after max_seconds."""
    done = 0
    with Progress(transient=True) as progress:
        task = progress.add_task(name, total=len(payloads))
        start = time.perf_counter()
        for chunk_start in range(0, len(payloads), 2000):
            for data in payloads[chunk_start : chunk_start + 2000]:
                step(RawClick.loads(data), True)
            done = min(chunk_start + 2000, len(payloads))
            progress.update(task, completed=done)
            if time.perf_counter() - start > max_seconds:
                break
        elapsed = time.perf_counter() - start
    return done, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clicks", type=int, default=200_000)
    parser.add_argument("--uas", type=int, default=2_000)
    parser.add_argument("--ips", type=int, default=5_000)
    parser.add_argument("--miss-clicks", type=int, default=5_000, help="clicks with all-new UA and IP")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time budget per phase")
    args = parser.parse_args()
    console = Console()

    rng = random.Random(42)
    payloads = _payloads(rng, args.clicks, _user_agents(rng, args.uas), _ips(rng, args.ips))
    fresh = args.miss_clicks
    misses = _payloads(rng, fresh, _user_agents(rng, fresh), _ips(rng, fresh))

    started = time.perf_counter()
    geo = GeoResolver()
    parse_user_agent("warm-up")  # loads the ua-parser matchers (~0.2 s), not per-click work
    bots.classify("warm-up", "GET", False)  # compiles crawlerdetect's patterns
    setup = time.perf_counter() - started
    enricher = ClickEnricher(geo, store_ip=False, visitor_ids=VisitorIdFactory("bench-secret"))

    results = [
        ("baseline (decode + construct)", *_run("baseline", payloads, _passthrough, args.max_seconds)),
        ("enrich, cold caches", *_run("enrich", payloads, enricher.enrich, args.max_seconds)),
        ("enrich, warm caches", *_run("enrich warm", payloads, enricher.enrich, args.max_seconds)),
        ("enrich, every UA and IP new", *_run("misses", misses, enricher.enrich, args.max_seconds)),
    ]

    geo_file = Path(geo.database_path).name if geo.database_path else "none"
    table = Table(title=f"click enrichment (ua resolver {resolver_name()}, geo {geo_file})")
    for column in ("phase", "clicks", "seconds", "clicks/s", "µs/click", "vs baseline"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    baseline_rate = results[0][1] / results[0][2]
    for phase, done, seconds in results:
        rate = done / seconds
        slowdown = baseline_rate / rate
        cells = (f"{done:,}", f"{seconds:.2f}", f"{rate:,.0f}", f"{1e6 / rate:.1f}", f"{slowdown:.1f}x")
        table.add_row(phase, *cells)
    console.print(table)
    console.print(
        f"setup {setup:.2f}s; pools: {args.uas} UAs, {args.ips} IPs; "
        f"UA cache {parse_user_agent.cache_info().currsize} entries"
    )


if __name__ == "__main__":
    main()
