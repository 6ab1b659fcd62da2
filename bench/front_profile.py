"""Per-request cost of the redirect front's synchronous path, in process, without sockets.

    .venv/bin/python bench/front_profile.py [--case plain|utm|rules|all] [--requests 20000]
                                            [--conns 64] [--callgrind] [--cprofile]

Builds the api app (no PostgreSQL, Redis or broker: the link, its rules and the A/B split are put
straight into the in-process caches), then feeds `--requests` cache-hit requests, the headers wrk
sends in bench/redirect.py (eight user agents in turn, Accept-Language, Referer), through
`--conns` FrontProtocol objects on fake transports: each event-loop turn every connection gets
one request, as with wrk's `--connections` and one request in flight each; the turn's flush
journals the clicks (a real ClickJournal in a temporary directory) and hands them to a real
librdkafka producer (pointed at a closed port: produce() queues, nothing is delivered, so the
delivery-report callbacks are not part of the figure).

Without options it prints wall-clock and process-CPU µs per request (noisy on a shared machine).
`--callgrind` runs the drive under `valgrind --tool=callgrind` with instrumentation switched on
(`callgrind_control`) only while the requests are fed, and prints the main thread's instructions
per request (start-up, imports and shutdown are not counted); with FRONT_PROFILE_KEEP=path the
main thread's dump is copied there for `callgrind_annotate`. Instruction counts do not depend on the machine's load, which makes them the
figure to compare before/after changes on a busy machine. `--cprofile` prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
)
HOST = "127.0.0.1:8080"
RULES = [
    {"id": "r-device", "rule_type": "device", "priority": 30,
     "conditions": {"device_types": ["mobile", "tablet"]}, "destination_url": "https://m.example.com/landing"},
    {"id": "r-geo", "rule_type": "geo", "priority": 20,
     "conditions": {"countries": ["US", "CA"]}, "destination_url": "https://us.example.com/landing"},
    {"id": "r-ab", "rule_type": "ab_test", "priority": 10, "conditions": {"variants": [
        {"id": "control", "url": "https://example.com/landing", "weight": 50},
        {"id": "new", "url": "https://example.com/landing-v2", "weight": 50},
    ]}, "destination_url": ""},
]  # fmt: skip


class FakeTransport:
    """Just enough of uvloop's TCPTransport for FrontProtocol."""

    def __init__(self) -> None:
        self.written = 0
        self.responses = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.responses += data.count(b"HTTP/1.1 ")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _requests(code: str) -> list[bytes]:
    return [
        (
            f"GET /{code} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: {agent}\r\n"
            "Accept-Language: en-US,en;q=0.9\r\nReferer: https://www.google.com/\r\n\r\n"
        ).encode()
        for agent in AGENTS
    ]


async def _build(case: str, data_dir: Path) -> tuple[Any, list[bytes]]:
    from api import click_producer, redirect
    from api.app import create_app
    from api.click_journal import open_journal
    from api.click_producer import RdKafkaClickEmitter
    from api.front import Front
    from api.state import EMITTER, RESOLVER, VISITORS
    from engine.clicks.geo import GeoResolver
    from engine.clicks.visitor import VisitorIdFactory
    from engine.config import Settings
    from engine.links.cache import LinkResolver, ResolvedLink
    from engine.links.models import CachedLink
    from engine.naming import RedisKeys

    settings = Settings(default_domain=HOST, data_dir=data_dir, secret_key="x" * 40)
    app = create_app(settings)
    resolver = LinkResolver(None, None, RedisKeys("bench"), lru_ttl=1e9)  # type: ignore[arg-type]
    app[RESOLVER] = resolver
    app[VISITORS] = VisitorIdFactory(settings.secret_key)
    app[redirect.GEO] = GeoResolver.from_settings(settings)
    logging.getLogger("api.click_producer").setLevel(logging.CRITICAL)  # the broker is closed
    click_producer.MESSAGE_TIMEOUT_MS = 3_600_000  # nothing is delivered: keep them queued
    emitter = RdKafkaClickEmitter("127.0.0.1:9", "bench.clicks.raw", open_journal(data_dir / "journal"))
    emitter._on_error = lambda err: None  # type: ignore[method-assign]  # no broker, on purpose
    emitter.degraded = False
    emitter._loop = asyncio.get_running_loop()
    emitter.producer = emitter._make_producer()
    app[EMITTER] = emitter
    link = CachedLink(
        id="00000000-0000-0000-0000-0000000000a1",
        workspace_id="00000000-0000-0000-0000-0000000000b1",
        domain_id="",
        short_code=case,
        url="https://example.com/landing",
        is_active=True,
        expires_at=None,
        max_clicks=None,
        password_hash=None,
        utm={"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring-sale"}
        if case == "utm"
        else {},
        rules=RULES if case == "rules" else [],
    )
    resolver.lru.set(("", case), ResolvedLink.of(link))
    resolver._observed.set(link.id, {}, ttl=1e9)
    no_server = type("NoServer", (), {"connections": ()})()  # no hand-off in this drive
    front = Front(app, no_server)
    return front, _requests(case)


async def _drive(case: str, total: int, conns: int, data_dir: Path, profile: Any = None) -> float:
    from api.front import FrontProtocol

    front, requests = await _build(case, data_dir)
    protocols = []
    for _ in range(conns):
        proto = FrontProtocol(front)
        proto.connection_made(FakeTransport())  # type: ignore[arg-type]
        protocols.append(proto)
    # Warm-up, not measured: every request variant once per connection (the user-agent parser's
    # regexes are compiled on first use, the caches of the front fill).
    for _ in range(len(requests)):
        for proto in protocols:
            proto.data_received(requests[_ % len(requests)])
        await asyncio.sleep(0)
    for proto in protocols:
        proto.transport.responses = 0  # type: ignore[attr-defined]
    # As `linkrift api` does once it is up (api.front.serve): the start-up heap out of the
    # collector's sight, so a full collection during the drive does not walk it.
    gc.collect()
    gc.freeze()
    sync = os.environ.get("FRONT_PROFILE_SYNC")
    if sync:  # --callgrind: instrumentation is switched on for the drive only
        _handshake(Path(sync), "ready", "go")
    turns = max(1, total // conns)
    n = len(requests)
    i = 0
    if profile is not None:
        profile.enable()
    started = time.perf_counter()
    cpu = time.process_time()
    for _ in range(turns):
        for proto in protocols:
            proto.data_received(requests[i % n])
            i += 1
        await asyncio.sleep(0)
    elapsed_cpu = time.process_time() - cpu
    elapsed = time.perf_counter() - started
    if sync:
        _handshake(Path(sync), "done", "dumped")
    if profile is not None:
        profile.disable()
    answered = sum(p.transport.responses for p in protocols if p.transport is not None)  # type: ignore[attr-defined]
    if answered != turns * conns:
        raise SystemExit(f"{case}: {answered} responses for {turns * conns} requests")
    if os.environ.get("FRONT_PROFILE_QUIET") is None:
        print(
            f"{case:6s} {turns * conns} requests, {conns} per turn: "
            f"{elapsed / (turns * conns) * 1e6:.2f} µs/req wall, {elapsed_cpu / (turns * conns) * 1e6:.2f} µs/req CPU"
        )
    front._emitter.producer.purge(in_queue=True, in_flight=True, blocking=False)
    front._emitter.journal.close()
    return elapsed_cpu


def _run(case: str, total: int, conns: int, profile: Any = None) -> None:
    import uvloop

    with tempfile.TemporaryDirectory(prefix="lr-front-profile-") as tmp:
        uvloop.run(_drive(case, total, conns, Path(tmp), profile))


def _handshake(directory: Path, say: str, wait_for: str) -> None:
    (directory / say).touch()
    while not (directory / wait_for).exists():
        time.sleep(0.02)


def _callgrind_ir(case: str, total: int, conns: int) -> int:
    """The main thread's instructions for the drive of `total` requests: valgrind starts with
    instrumentation off (imports and set-up run at ~5x instead of ~50x), `callgrind_control -i on`
    when the drive starts, a dump when it ends (interpreter shutdown is not counted)."""
    with tempfile.TemporaryDirectory(prefix="lr-callgrind-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        sync = Path(tmp)
        proc = subprocess.Popen(
            [
                "valgrind", "--tool=callgrind", "--separate-threads=yes", "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                sys.executable, __file__, "--case", case, "--requests", str(total), "--conns", str(conns),
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "FRONT_PROFILE_QUIET": "1", "PYTHONHASHSEED": "0", "FRONT_PROFILE_SYNC": tmp},
        )  # fmt: skip
        try:
            for name in ("ready", "done"):
                while not (sync / name).exists():
                    if proc.poll() is not None:
                        raise RuntimeError(f"valgrind exited ({proc.returncode}) before {name}")
                    time.sleep(0.05)
                if name == "ready":
                    _control("-i", "on", proc.pid)
                    (sync / "go").touch()
                else:
                    _control("-d", "drive", proc.pid)
                    _control("-i", "off", proc.pid)
                    (sync / "dumped").touch()
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        dumps = [f for f in glob.glob(out + "*") if re.search(r"\.1-01$", f)]
        if not dumps:
            raise RuntimeError(f"no dump of the main thread in {sorted(glob.glob(out + '*'))}")
        if os.environ.get("FRONT_PROFILE_KEEP"):  # for callgrind_annotate
            shutil.copy(dumps[0], os.environ["FRONT_PROFILE_KEEP"])
        text = Path(dumps[0]).read_text(errors="replace")
        match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no totals in {dumps[0]}")
        return int(match.group(1))


def _control(*args: object) -> None:
    subprocess.run(["callgrind_control", *map(str, args)], check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", default="all", choices=("plain", "utm", "rules", "all"))
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--callgrind", action="store_true", help="instructions per request under callgrind")
    parser.add_argument("--cprofile", action="store_true", help="top functions by cumulative time")
    args = parser.parse_args()
    cases = ("plain", "utm", "rules") if args.case == "all" else (args.case,)
    for case in cases:
        if args.callgrind:
            n = args.requests // args.conns * args.conns
            per = _callgrind_ir(case, n, args.conns) / n
            print(f"{case:6s} {per:,.0f} instructions/request (main thread; {args.conns} per turn, N={n})")
        elif args.cprofile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            _run(case, args.requests, args.conns, profile)
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        else:
            _run(case, args.requests, args.conns)


if __name__ == "__main__":
    main()
