"""Click pipeline throughput and freshness: `linkrift worker` versus a raw aiokafka consume loop.

    .venv/bin/python bench/pipeline.py [--clicks 50000] [--links 200] [--partitions 8]
                                       [--fresh-clicks 200] [--fresh-rate 20] [--restarts 3] [--profile]

Starts a fresh PG database, a Redis namespace, a tansu broker and an embedded chDB directory;
produces N raw clicks into `clicks.raw`, times a plain AIOKafkaConsumer reading all N (no
processing), then starts `linkrift worker` (enrich → dedup → count → ClickHouse → Redis) and
times it through the same N by polling the per-link Redis counters. Both rates are measured from
the first message (or first counted click) to the last, so process start-up is not included.
Freshness: single clicks produced at a low rate with their `ts`, received on the live click
stream channel; receive time minus `ts` is the click → Redis delay.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from common import (
    LINKRIFT,
    bench_database,
    fold_profile,
    free_ports,
    platform_env,
    py_spy_record,
    redis_namespace,
    start_process,
    tansu,
)
from enrich import _ips, _user_agents
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cli.procs import ManagedProcess
from cli.services import ensure_topics
from engine.clicks.models import RawClick
from engine.naming import RedisKeys, Topics

console = Console()
REFERERS = ("", "", "https://www.google.com/", "https://t.co/abc", "https://news.ycombinator.com/item?id=1")


def _clicks(
    rng: random.Random, n: int, links: list[tuple[str, str]], *, ts: float | None = None
) -> list[RawClick]:
    uas = _user_agents(rng, 500)
    ips = _ips(rng, 2000)
    out = []
    for _ in range(n):
        link_id, workspace_id = rng.choice(links)
        out.append(
            RawClick(
                event_id=uuid.uuid4().hex, ts=time.time() if ts is None else ts, link_id=link_id,
                workspace_id=workspace_id, domain="127.0.0.1", short_code="bench", destination="https://example.com/",
                ip=rng.choice(ips), user_agent=rng.choice(uas), referer=rng.choice(REFERERS),
                accept_language="en-US,en;q=0.9", visitor_id=f"{rng.getrandbits(40):010x}",
            )
        )  # fmt: skip
    return out


async def _produce(bootstrap: str, topic: str, clicks: list[RawClick]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value=c.dumps(), key=c.link_id.encode()) for c in clicks]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def _raw_consume(bootstrap: str, topic: str, n: int, max_seconds: float) -> tuple[int, float, float]:
    """(messages, seconds from first message to the n-th, seconds including consumer start)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    began = time.perf_counter()
    await consumer.start()
    total = 0
    first_batch = 0
    first = 0.0
    try:
        while total < n and time.perf_counter() - began < max_seconds:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            received = sum(len(messages) for messages in batches.values())
            if received and not first:
                # The rate counts what arrives after the first batch, as for the worker.
                first, first_batch = time.perf_counter(), received
            total += received
        done = time.perf_counter()
    finally:
        await consumer.stop()
    return total - first_batch, done - first, done - began


async def _restarts(
    bootstrap: str,
    topic: str,
    redis_client: object,
    counter_keys: list[str],
    worker: ManagedProcess,
    clicks: list[RawClick],
    times: int,
) -> list[float]:
    """SIGKILL the worker `times` times while clicks trickle in (20/s) and time each restart: from
    starting the new process to its first newly counted click (Python start-up, group join,
    state recovery from the changelog, first batch)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    pending = iter(clicks)
    stop = asyncio.Event()

    async def trickle() -> None:
        for click in pending:
            if stop.is_set():
                return
            click.ts = time.time()
            await producer.send(topic, value=click.dumps(), key=click.link_id.encode())
            await asyncio.sleep(0.05)

    feeder = asyncio.create_task(trickle())
    resumes: list[float] = []
    try:
        for _ in range(times):
            await asyncio.sleep(2.0)
            worker.kill()
            await asyncio.sleep(0.5)
            before = await _counted(redis_client, counter_keys)
            restarted = time.perf_counter()
            worker.start()
            while await _counted(redis_client, counter_keys) <= before:
                if not worker.alive:
                    raise RuntimeError(f"worker exited:\n{worker.log_tail(40)}")
                if time.perf_counter() - restarted > 60:
                    raise RuntimeError(f"worker did not resume within 60 s:\n{worker.log_tail(20)}")
                await asyncio.sleep(0.02)
            resumes.append(time.perf_counter() - restarted)
    finally:
        stop.set()
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await producer.stop()
    return resumes


def _cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / 100.0


async def _counted(redis_client: object, keys: list[str]) -> int:
    values = await redis_client.mget(keys)  # type: ignore[attr-defined]
    return sum(int(v) for v in values if v is not None)


async def _worker_throughput(
    redis_client: object,
    counter_keys: list[str],
    n: int,
    worker: ManagedProcess,
    args: argparse.Namespace,
    work: Path,
) -> tuple[int, float, float, float]:
    """(clicks counted after the first observation, seconds, worker CPU cores, start-up seconds)."""
    began = time.perf_counter()
    first_at = 0.0
    first_count = 0
    recorders = []
    cpu_before = 0.0
    count = 0
    with Progress(transient=True) as progress:
        task = progress.add_task("worker", total=n)
        while count < n:
            if not worker.alive:
                raise RuntimeError(f"worker exited:\n{worker.log_tail(40)}")
            if time.perf_counter() - began > args.max_seconds:
                raise RuntimeError(
                    f"worker counted {count}/{n} within {args.max_seconds:.0f}s:\n{worker.log_tail(20)}"
                )
            count = await _counted(redis_client, counter_keys)
            progress.update(task, completed=count)
            if count and not first_at:
                first_at, first_count = time.perf_counter(), count
                cpu_before = _cpu_seconds(worker.pid)
                if args.profile and worker.pid is not None:
                    recorders = py_spy_record([worker.pid], args.profile_seconds, work)
            await asyncio.sleep(0.02)
    seconds = time.perf_counter() - first_at
    cores = (_cpu_seconds(worker.pid) - cpu_before) / seconds if seconds else 0.0
    for recorder in recorders:
        await asyncio.to_thread(recorder.wait)
    return count - first_count, seconds, cores, first_at - began


async def _freshness(
    bootstrap: str, topic: str, redis_client: object, channel: str, clicks: list[RawClick], rate: float
) -> list[float]:
    """Seconds from each click's ts to its arrival on the live stream channel."""
    pubsub = redis_client.pubsub()  # type: ignore[attr-defined]
    await pubsub.subscribe(channel)
    pending: dict[str, float] = {}
    delays: list[float] = []

    async def listen() -> None:
        async for message in pubsub.listen():
            if message.get("type") != "message":
                continue
            received = time.time()
            event_id = orjson.loads(message["data"]).get("event_id")
            if event_id in pending:
                delays.append(received - pending.pop(event_id))
                if not pending and len(delays) == len(clicks):
                    return

    listener = asyncio.create_task(listen())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        for click in clicks:
            click.ts = time.time()
            pending[click.event_id] = click.ts
            await producer.send(topic, value=click.dumps(), key=click.link_id.encode())
            await asyncio.sleep(1.0 / rate)
        await producer.flush()
        try:
            await asyncio.wait_for(listener, timeout=15)
        except TimeoutError:
            console.print(f"[red]{len(pending)} fresh clicks not seen on the live stream within 15 s[/red]")
    finally:
        listener.cancel()
        await producer.stop()
        await pubsub.aclose()
    return delays


def _worker_metrics(port: int) -> dict[str, float]:
    """The worker's Prometheus counters that describe its batches (sums and counts)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(("linkrift_sink_", "linkrift_clicks_processed")) and name.endswith(
            ("_sum", "_count", "_total")
        ):
            out[name] = float(value)
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _print_profile(work: Path, top: int) -> None:
    profiles = list(work.glob("pyspy-*.txt"))
    if not profiles:
        console.print("[red]no py-spy profile was written[/red]")
        return
    total, own, inclusive = fold_profile(profiles[0])
    for title, counter in (("self", own), ("inclusive", inclusive)):
        prof = Table(title=f"worker profile during the throughput phase, {title} ({total:,} samples)")
        prof.add_column("function")
        prof.add_column("share", justify="right")
        for name, count in counter.most_common(top):
            prof.add_row(name, f"{100 * count / max(total, 1):.1f}%")
        console.print(prof)


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="lr-bench-pipeline-"))
    rng = random.Random(7)
    links = [(str(uuid.uuid4()), str(uuid.UUID(int=1 + i % 5))) for i in range(args.links)]
    async with (
        bench_database() as dsn,
        redis_namespace() as (namespace, redis_client),
        tansu(work / "tansu") as broker,
    ):
        topics, keys = Topics(namespace), RedisKeys(namespace)
        await ensure_topics(broker.bootstrap, {topics.clicks_raw: args.partitions})
        clicks = _clicks(rng, args.clicks, links)
        produce_seconds = await _produce(broker.bootstrap, topics.clicks_raw, clicks)
        console.print(
            f"produced {args.clicks:,} clicks in {produce_seconds:.2f}s ({args.clicks / produce_seconds:,.0f}/s)"
        )

        raw_seen, raw_seconds, raw_total = await _raw_consume(
            broker.bootstrap, topics.clicks_raw, args.clicks, args.max_seconds
        )
        raw_rate = raw_seen / raw_seconds
        console.print(
            f"raw consume: {raw_seen:,} after the first batch in {raw_seconds:.2f}s ({raw_total:.2f}s with start-up)"
        )

        (worker_port,) = free_ports(1)
        env = platform_env(
            database_url=dsn, namespace=namespace, broker_url=broker.url, data_dir=work / "data"
        )
        env.update(LINKRIFT_TOPIC_PARTITIONS=str(args.partitions), LINKRIFT_WORKER_PORT=str(worker_port))
        worker = start_process("worker", [LINKRIFT, "worker"], work, env)
        try:
            counter_keys = [keys.realtime_link(link_id) for link_id, _ in links]
            tansu_cpu = _cpu_seconds(broker.pid)
            counted, seconds, cores, startup = await _worker_throughput(
                redis_client, counter_keys, args.clicks, worker, args, work
            )
            batch_metrics = await asyncio.to_thread(_worker_metrics, worker_port)
            worker_rate = counted / seconds
            fresh = _clicks(rng, args.fresh_clicks, links)
            delays = await _freshness(
                broker.bootstrap, topics.clicks_raw, redis_client, keys.click_stream, fresh, args.fresh_rate
            )
            tansu_cores = (_cpu_seconds(broker.pid) - tansu_cpu) / (seconds + len(fresh) / args.fresh_rate)
            resumes = await _restarts(
                broker.bootstrap, topics.clicks_raw, redis_client, counter_keys, worker,
                _clicks(rng, 20 * 15 * args.restarts, links), args.restarts,
            )  # fmt: skip
        finally:
            worker.stop()

    table = Table(
        title=f"click pipeline, {args.clicks:,} clicks, {args.partitions} partitions, {args.links} links"
    )
    for column in ("stage", "clicks", "seconds", "clicks/s", "vs raw consume"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    table.add_row(
        "raw aiokafka consume (no processing)",
        f"{raw_seen:,}",
        f"{raw_seconds:.2f}",
        f"{raw_rate:,.0f}",
        "1.00",
    )
    table.add_row(
        "linkrift worker (enrich, dedup, count, sinks)", f"{counted:,}", f"{seconds:.2f}", f"{worker_rate:,.0f}",
        f"{worker_rate / raw_rate:.2f}",
    )  # fmt: skip
    console.print(table)
    console.print(
        f"worker start-up to first counted click {startup:.1f}s; worker CPU {cores:.2f} cores; tansu ~{tansu_cores:.2f} cores"
    )
    if batch_metrics:
        batches = batch_metrics.get("linkrift_sink_batch_size_count", 0.0)
        rows = batch_metrics.get("linkrift_sink_batch_size_sum", 0.0)
        ch_seconds = batch_metrics.get("linkrift_sink_latency_seconds_sum", 0.0)
        if batches:
            console.print(
                f"worker batches: {batches:.0f} ClickHouse inserts, {rows / batches:.0f} rows each on average, "
                f"{1000 * ch_seconds / batches:.0f} ms per insert ({ch_seconds:.1f}s of the {seconds:.1f}s); "
                f"{seconds / batches * 1000:.0f} ms per batch overall"
            )
    if delays:
        fresh_table = Table(title=f"click → Redis live stream, {len(delays)} clicks at {args.fresh_rate:g}/s")
        for column in ("p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"):
            fresh_table.add_column(column, justify="right")
        fresh_table.add_row(
            *(f"{1000 * v:.0f}" for v in (
                _percentile(delays, 0.5), _percentile(delays, 0.9), _percentile(delays, 0.99), max(delays),
                statistics.fmean(delays),
            ))
        )  # fmt: skip
        console.print(fresh_table)
    if resumes:
        console.print(
            f"restart-to-resume after SIGKILL ({len(resumes)} restarts, clicks trickling at 20/s): "
            + ", ".join(f"{r:.1f}s" for r in resumes)
        )
    targets = [
        ("≥ 10k clicks/s per worker", worker_rate >= 10_000),
        ("≥ 50% of raw consume", worker_rate >= 0.5 * raw_rate),
        ("p99 freshness < 1 s", bool(delays) and _percentile(delays, 0.99) < 1.0),
        ("restart-to-resume < 10 s", bool(resumes) and max(resumes) < 10.0),
    ]
    console.print("targets: " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in targets))
    if args.profile:
        _print_profile(work, args.profile_top)
    console.print(f"logs in {work}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clicks", type=int, default=50_000)
    parser.add_argument("--links", type=int, default=200)
    parser.add_argument("--restarts", type=int, default=3, help="SIGKILL-and-restart rounds timed at the end")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--fresh-clicks", type=int, default=200)
    parser.add_argument(
        "--fresh-rate", type=float, default=20.0, help="clicks per second in the freshness phase"
    )
    parser.add_argument("--max-seconds", type=float, default=180.0, help="give up on a phase after this long")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the worker during the throughput phase"
    )
    parser.add_argument("--profile-seconds", type=float, default=5.0)
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
