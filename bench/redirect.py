"""Redirect throughput: `linkrift api` versus a bare aiohttp 302 handler, driven by wrk on loopback.

    .venv/bin/python bench/redirect.py [--seconds 5] [--rounds 3] [--warmup 2] [--threads 2]
                                       [--connections 64] [--workers 2] [--profile]
                                       [--baseline-tree DIR]

Starts a fresh PG database (migrated, dropped at the end), a Redis namespace (keys deleted at the
end), a tansu broker and `linkrift api`; creates a plain link, a link with UTM parameters and a
link with a device, a geo and an A/B rule; then measures requests/s, p50/p99 latency and server
CPU per request for the bare handler and each link, in interleaved rounds (other load on the
machine then hits every target alike), and again with `--workers 2` against two bare processes
sharing a port (there wrk and tansu share both cores with the servers, so it also prints req/s per
server CPU second against one process). tansu runs at nice 10 in the one-process phase, where it
shares wrk's core (`--broker-nice`). "CPU efficiency vs bare" (bare CPU µs per request / target CPU µs per request)
is what the req/s ratio would be with a dedicated core per server; on a busy machine it is the
steadier figure. `--profile` samples the api with py-spy during an extra run on the rules link and prints
the hottest functions. The click emitter produces every click to tansu, as in production.
`--baseline-tree DIR` also starts a second `linkrift api` whose packages come from DIR (a copy of
an older checkout, put first on PYTHONPATH) and measures it in the same interleaved rounds, so a
before/after comparison sees the same background load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from common import (
    LINKRIFT,
    LoadResult,
    bench_database,
    child_pids,
    fold_profile,
    free_ports,
    make_principal,
    nginx_redirect,
    pin,
    platform_env,
    py_spy_record,
    python,
    redis_namespace,
    renice,
    run_wrk,
    start_process,
    tansu,
    wait_http,
)
from rich.console import Console
from rich.table import Table

from cli.procs import ManagedProcess

console = Console(width=None if sys.stdout.isatty() else 180)
DESKTOP_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
IPHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"


def _http(
    method: str, url: str, *, key: str | None = None, body: Any = None, ua: str = DESKTOP_UA
) -> tuple[int, Any, str]:
    """(status, json body or None, Location) without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"User-Agent": ua})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw[:1] == b"{" else None, resp.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw[:1] == b"{" else None, exc.headers.get("Location", "")


def _wait_api(base: str, key: str, proc: ManagedProcess, timeout: float = 60.0) -> None:
    """The api is up when an authenticated GET of the link list answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive:
            raise RuntimeError(f"linkrift api exited:\n{proc.log_tail(40)}")
        try:
            if _http("GET", f"{base}/api/v1/links/00000000-0000-0000-0000-000000000000", key=key)[0] in (
                200,
                404,
            ):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"linkrift api not ready after {timeout:.0f}s:\n{proc.log_tail(40)}")


async def _create_links(base: str, dsn: str, key: str) -> dict[str, str]:
    """Three links through the API; UTM columns and rules are written with SQL (no API for them yet)."""
    codes: dict[str, str] = {}
    ids: dict[str, str] = {}
    for name in ("plain", "utm", "rules"):
        status, link, _ = _http(
            "POST", f"{base}/api/v1/links", key=key, body={"url": "https://example.com/landing"}
        )
        if status != 201:
            raise RuntimeError(f"link create answered {status}: {link}")
        codes[name], ids[name] = link["short_code"], link["id"]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE links SET utm_source = 'newsletter', utm_medium = 'email', utm_campaign = 'spring-sale' WHERE id = $1",
            ids["utm"],
        )
        rules = [
            ("device", 30, {"device_types": ["mobile", "tablet"]}, "https://m.example.com/landing"),
            ("geo", 20, {"countries": ["US", "CA"]}, "https://us.example.com/landing"),
            ("ab_test", 10, {"variants": [
                {"id": "control", "url": "https://example.com/landing", "weight": 50},
                {"id": "new", "url": "https://example.com/landing-v2", "weight": 50},
            ]}, ""),
        ]  # fmt: skip
        for rule_type, priority, conditions, destination in rules:
            await conn.execute(
                "INSERT INTO link_rules (link_id, rule_type, priority, conditions, destination_url) VALUES ($1, $2, $3, $4, $5)",
                ids["rules"], rule_type, priority, json.dumps(conditions), destination,
            )  # fmt: skip
    finally:
        await conn.close()
    return codes


def _check_links(base: str, codes: dict[str, str]) -> None:
    expectations: list[tuple[str, str, Callable[[str], bool]]] = [
        ("plain", DESKTOP_UA, lambda loc: loc == "https://example.com/landing"),
        ("utm", DESKTOP_UA, lambda loc: "utm_source=newsletter" in loc and "utm_campaign=spring-sale" in loc),
        ("rules", IPHONE_UA, lambda loc: loc == "https://m.example.com/landing"),
        (
            "rules",
            DESKTOP_UA,
            lambda loc: loc in ("https://example.com/landing", "https://example.com/landing-v2"),
        ),
    ]
    for name, ua, ok in expectations:
        status, _, location = _http("GET", f"{base}/{codes[name]}", ua=ua)
        if status != 302 or not ok(location):
            raise RuntimeError(f"{name} link answered {status} Location={location!r}")


def _cpu_split(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of `pids` so far."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime, clock ticks
        system += int(fields[12])  # stime
    return user / 100.0, system / 100.0


def _cpu_seconds(pids: list[int]) -> float:
    return sum(_cpu_split(pids))


@dataclass
class Target:
    name: str
    url: str
    pids: list[int]
    runs: list[LoadResult] = field(default_factory=list)
    cpu: float = 0.0  # server CPU seconds over all measured runs

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu / self.requests if self.requests else float("nan")

    @property
    def cores(self) -> float:
        return self.cpu / sum(r.seconds for r in self.runs)


def _measure(targets: list[Target], args: argparse.Namespace) -> None:
    """Warm every target up, then `rounds` interleaved rounds over all targets, so load from other
    processes on the machine hits every target alike; per-round ratios are taken against the
    first target (the bare handler) of the same round."""
    for target in targets:
        if args.warmup > 0:
            run_wrk(
                target.name,
                target.url,
                seconds=args.warmup,
                threads=args.threads,
                connections=args.connections,
                cpus=args.wrk_cpus,
            )
    for round_no in range(1, args.rounds + 1):
        for target in targets:
            user_before, sys_before = _cpu_split(target.pids)
            result = run_wrk(
                target.name,
                target.url,
                seconds=args.seconds,
                threads=args.threads,
                connections=args.connections,
                cpus=args.wrk_cpus,
            )
            user_after, sys_after = _cpu_split(target.pids)
            system = sys_after - sys_before
            cpu = user_after - user_before + system
            target.runs.append(result)
            target.cpu += cpu
            console.print(
                f"  round {round_no} {target.name:<30} {result.rps:>8,.0f} req/s  p50 {result.p50_ms:6.2f} ms"
                f"  p99 {result.p99_ms:7.2f} ms  server {cpu / result.seconds:4.2f} cores"
                f"  {1e6 * cpu / max(result.requests, 1):6.0f} µs CPU/req ({100 * system / max(cpu, 1e-9):2.0f}% system)"
                f"  errors {result.errors}",
                highlight=False,
            )


def _per_core(target: Target) -> float:
    """Requests per second of server CPU (all runs of the target)."""
    return target.requests / target.cpu if target.cpu else float("nan")


def _table(title: str, targets: list[Target]) -> Table:
    bare = targets[0]
    table = Table(title=title)
    columns = (
        "target", "requests", "req/s (median)", "p50 ms", "p99 ms", "server cores", "CPU µs/req",
        "req/s vs bare", "CPU efficiency vs bare",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "target" else "right")
    for target in targets:
        ratio = statistics.median(r.rps / b.rps for r, b in zip(target.runs, bare.runs, strict=True))
        table.add_row(
            target.name, f"{target.requests:,}", f"{target.rps:,.0f}",
            f"{statistics.median(r.p50_ms for r in target.runs):.2f}",
            f"{statistics.median(r.p99_ms for r in target.runs):.2f}", f"{target.cores:.2f}",
            f"{target.cpu_us_per_request:.0f}", f"{ratio:.2f}",
            f"{bare.cpu_us_per_request / target.cpu_us_per_request:.2f}",
        )  # fmt: skip
    return table


def _profile(url: str, pids: list[int], args: argparse.Namespace, out_dir: Path) -> None:
    recorders = py_spy_record(pids, args.seconds, out_dir)
    time.sleep(0.5)
    run_wrk("profile", url, seconds=args.seconds, threads=args.threads, connections=args.connections)
    for recorder in recorders:
        _, err = recorder.communicate(timeout=args.seconds + 30)
        if recorder.returncode != 0:
            console.print(f"[red]py-spy failed: {err.decode(errors='replace')[-500:]}[/red]")
            return
    total, own, inclusive = fold_profile(out_dir / f"pyspy-{pids[0]}.txt")
    if not total:
        console.print("[red]py-spy recorded no samples[/red]")
        return
    for title, counter in (("self time", own), ("inclusive time", inclusive)):
        table = Table(
            title=f"api profile on the {args.profile_link} link, {title} ({total:,} samples while busy)"
        )
        table.add_column("function")
        table.add_column("share", justify="right")
        # Frames on every stack (the event loop, run_app) say nothing; list what is below them.
        shown = [(n, c) for n, c in counter.most_common() if c < 0.85 * total][: args.profile_top]
        for name, count in shown:
            table.add_row(name, f"{100 * count / total:.1f}%")
        console.print(table)
    console.print(f"raw folded stacks: {out_dir / f'pyspy-{pids[0]}.txt'}")


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="lr-bench-redirect-"))
    async with (
        bench_database() as dsn,
        redis_namespace() as (namespace, _redis),
        tansu(work / "tansu") as broker,
    ):
        who = await make_principal(dsn)
        api_port, bare_port, api2_port, bare2_port, base_port, nginx_port = free_ports(6)
        env = platform_env(
            database_url=dsn, namespace=namespace, broker_url=broker.url, data_dir=work / "data"
        )
        procs: list[ManagedProcess] = []
        try:
            api = start_process("api", [LINKRIFT, "api", "--port", str(api_port)], work, env)
            procs.append(api)
            bare = start_process("bare", [python(), "bench/bare_redirect_app.py", str(bare_port)], work)
            procs.append(bare)
            base = f"http://127.0.0.1:{api_port}"
            _wait_api(base, who["api_key"], api)
            old: ManagedProcess | None = None
            if args.baseline_tree:
                old_env = {**env, "PYTHONPATH": args.baseline_tree}
                old = start_process(
                    "api-baseline", [LINKRIFT, "api", "--port", str(base_port)], work, old_env
                )
                procs.append(old)
                _wait_api(f"http://127.0.0.1:{base_port}", who["api_key"], old)
            wait_http(f"http://127.0.0.1:{bare_port}/healthz", 30, bare)
            nginx = nginx_redirect(work, nginx_port)
            procs.append(nginx)
            codes = await _create_links(base, dsn, who["api_key"])
            _check_links(base, codes)
            assert api.pid is not None and bare.pid is not None and broker.pid is not None
            console.print(
                f"api pid {api.pid}, bare pid {bare.pid}, tansu pid {broker.pid}; wrk -t{args.threads} "
                f"-c{args.connections} {args.seconds:.0f}s per target after {args.warmup:.0f}s warm-up"
            )
            bare_url = f"http://127.0.0.1:{bare_port}/abc123"
            assert nginx.pid is not None
            if args.server_cpus:
                # Servers on one core, wrk (and tansu, receiving every click) on the other.
                pin([api.pid, bare.pid, nginx.pid], args.server_cpus)
                pin([broker.pid], args.wrk_cpus)
                console.print(
                    f"pinned: servers to CPU {args.server_cpus}, wrk and tansu to CPU {args.wrk_cpus}"
                )
            if args.broker_nice:
                # On a two-core machine the broker shares a core with wrk: niced, it takes wrk's idle
                # time instead of delaying wrk's reads (latency the servers did not cause).
                renice(broker.pid, args.broker_nice)
                console.print(f"tansu runs at nice {args.broker_nice}")
            began, tansu_before = time.monotonic(), _cpu_seconds([broker.pid])
            one = [
                Target("bare aiohttp 302", bare_url, [bare.pid]),
                Target("nginx return 302", f"http://127.0.0.1:{nginx_port}/abc123", [nginx.pid]),
                Target("api: plain link", f"{base}/{codes['plain']}", [api.pid]),
                Target("api: link with UTM", f"{base}/{codes['utm']}", [api.pid]),
                Target("api: link with 3 rules", f"{base}/{codes['rules']}", [api.pid]),
            ]
            if old is not None:
                assert old.pid is not None
                old_base = f"http://127.0.0.1:{base_port}"
                _check_links(old_base, codes)
                for index, name in ((3, "rules"), (2, "utm"), (1, "plain")):
                    one.insert(index, Target(f"baseline: {name}", f"{old_base}/{codes[name]}", [old.pid]))
            _measure(one, args)
            by_name = {t.name: t for t in one}
            tansu_cores = (_cpu_seconds([broker.pid]) - tansu_before) / (time.monotonic() - began)
            console.print(_table("one process each", one))
            nginx_target = by_name["nginx return 302"]
            for target in one[2:]:
                ratio = statistics.median(
                    r.rps / n.rps for r, n in zip(target.runs, nginx_target.runs, strict=True)
                )
                console.print(f"{target.name}: {ratio:.2f}x nginx return 302 (median of per-round ratios)")
            console.print(f"tansu (receiving every click) used {tansu_cores:.2f} cores on average meanwhile")
            if args.profile:
                _profile(f"{base}/{codes[args.profile_link]}", [api.pid], args, work)
            api.stop()
            bare.stop()
            nginx.stop()
            if old is not None:
                old.stop()
            if args.workers > 1:
                argv = [LINKRIFT, "api", "--port", str(api2_port), "--workers", str(args.workers)]
                # Its own data dir: the one-process api's click journal (no worker drains it in this
                # bench) would otherwise be recovered and replayed by a child while it is measured.
                api2 = start_process("api2", argv, work, {**env, "LINKRIFT_DATA_DIR": str(work / "data2")})
                procs.append(api2)
                bare_argv = [python(), "bench/bare_redirect_app.py", str(bare2_port), "--reuse-port"]
                bares = [start_process(f"bare{i}", bare_argv, work) for i in range(args.workers)]
                procs.extend(bares)
                base2 = f"http://127.0.0.1:{api2_port}"
                _wait_api(base2, who["api_key"], api2)
                wait_http(f"http://127.0.0.1:{bare2_port}/healthz", 30, bares[0])
                assert api2.pid is not None
                await asyncio.sleep(2.0)  # every api child finishes start-up (one answering is enough above)
                api_children = child_pids(api2.pid)
                bare_pids = [b.pid for b in bares if b.pid is not None]
                if args.server_cpus:
                    pin([broker.pid], "0-1")  # two servers use both cores: nothing is pinned here
                if args.broker_nice:
                    # Both cores busy with servers and wrk: niced, tansu would fall behind the clicks.
                    renice(broker.pid, 0)
                console.print(f"--workers {args.workers}: api parent {api2.pid}, children {api_children}")
                cpu_before = {pid: _cpu_seconds([pid]) for pid in api_children}
                many = [
                    Target(
                        f"bare x{args.workers} (SO_REUSEPORT)",
                        f"http://127.0.0.1:{bare2_port}/abc123",
                        bare_pids,
                    ),
                    Target(f"api --workers {args.workers}: plain", f"{base2}/{codes['plain']}", api_children),
                    Target(f"api --workers {args.workers}: rules", f"{base2}/{codes['rules']}", api_children),
                ]
                args.wrk_cpus = ""  # both cores serve: wrk shares them
                _measure(many, args)
                spread = {pid: _cpu_seconds([pid]) - cpu_before[pid] for pid in api_children}
                console.print(_table(f"{args.workers} processes each", many))
                console.print(
                    "CPU seconds per api child (how SO_REUSEPORT spread the connections): "
                    + ", ".join(f"{pid}: {sec:.1f}s" for pid, sec in spread.items())
                )
                console.print(
                    f"scaling x{args.workers}/x1 (median req/s): bare {many[0].rps / one[0].rps:.2f}, "
                    f"api plain {many[1].rps / by_name['api: plain link'].rps:.2f}, "
                    f"api rules {many[2].rps / by_name['api: link with 3 rules'].rps:.2f}"
                )
                # wrk and tansu share the machine's cores with the servers in this phase, so the
                # servers get less than `workers` cores: req/s per server core says whether the
                # processes keep their one-process efficiency (x workers = req/s on dedicated cores).
                pairs = (
                    ("bare", many[0], one[0]),
                    ("api plain", many[1], by_name["api: plain link"]),
                    ("api rules", many[2], by_name["api: link with 3 rules"]),
                )
                console.print(
                    f"req/s per server CPU second x{args.workers}/x1 (x{args.workers} that, the scaling with a"
                    " core per process): "
                    + ", ".join(
                        f"{name} {_per_core(multi) / _per_core(single):.2f}"
                        f" ({args.workers * _per_core(multi) / _per_core(single):.2f})"
                        for name, multi, single in pairs
                    )
                )
        finally:
            for proc in reversed(procs):
                proc.stop()
    console.print(f"logs and profiles in {work}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured wrk run per target and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all targets")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured wrk run before each target")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--server-cpus",
        default="0",
        help="taskset CPU list for the servers in the one-process phase ('' = no pinning)",
    )
    parser.add_argument(
        "--wrk-cpus", default="1", help="taskset CPU list for wrk (and tansu) ('' = no pinning)"
    )
    parser.add_argument(
        "--broker-nice",
        type=int,
        default=10,
        help="nice value of tansu's threads (0 = as started); it shares wrk's core",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes for the multi-process phase (1 skips it)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the api during an extra rules-link run"
    )
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument(
        "--profile-link",
        choices=("plain", "utm", "rules"),
        default="rules",
        help="link the --profile run uses",
    )
    parser.add_argument(
        "--baseline-tree", help="also measure a `linkrift api` run from this source tree (before/after)"
    )
    args = parser.parse_args()
    if args.baseline_tree:
        args.baseline_tree = os.path.abspath(args.baseline_tree)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
