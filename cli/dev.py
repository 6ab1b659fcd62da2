"""`linkrift dev`: the whole platform on one machine, in the foreground, until Ctrl-C.

Reuses PostgreSQL/Redis when reachable (else embedded ones), starts tansu unless KAFKA_BROKER is
set, uses chDB under the data dir unless CLICKHOUSE_URL is set, migrates, bootstraps an owner,
then runs `linkrift worker` and `linkrift api` as children and stops them all on exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
import urllib.request
from pathlib import Path

from rich.console import Console

from cli.procs import ManagedProcess, free_port, port_open
from cli.services import ResolvedServices, ensure_topics, redact, resolve_services
from engine.config import Settings
from engine.naming import Topics

console = Console(highlight=False)


def _secret(data_dir: Path, name: str) -> str:
    """A per-installation secret, generated once and kept in the data dir."""
    path = data_dir / "secrets" / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.write_text(value)
    path.chmod(0o600)
    return value


def child_env(
    settings: Settings, services: ResolvedServices, data_dir: Path, port: int, worker_port: int
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(services.env())
    env.update(
        LINKRIFT_DATA_DIR=str(data_dir),
        LINKRIFT_PORT=str(port),
        LINKRIFT_HOST=settings.host,
        LINKRIFT_WORKER_PORT=str(worker_port),
        LINKRIFT_DEFAULT_DOMAIN=f"{settings.host}:{port}",
        LINKRIFT_BASE_URL=settings.base_url or f"http://{settings.host}:{port}",
        LINKRIFT_SECRET_KEY=os.environ.get("LINKRIFT_SECRET_KEY") or _secret(data_dir, "secret_key"),
        LINKRIFT_INTERNAL_TOKEN=os.environ.get("LINKRIFT_INTERNAL_TOKEN")
        or _secret(data_dir, "internal_token"),
        PYTHONUNBUFFERED="1",
    )
    if "CLICKHOUSE_URL" not in os.environ:
        env["CLICKHOUSE_URL"] = f"chdb://{data_dir / 'clickhouse'}"
    return env


async def _bootstrap(database_url: str, base_url: str, data_dir: Path) -> dict[str, str]:
    from engine.accounts.bootstrap import create_dev_owner, still_valid
    from engine.db.pool import create_pool

    path = data_dir / "credentials.json"
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            if path.exists():
                saved = json.loads(path.read_text())
                if await still_valid(conn, saved.get("api_key", ""), saved.get("workspace_id", "")):
                    saved["base_url"] = base_url
                    path.write_text(json.dumps(saved, indent=2))
                    return dict(saved)
            creds = await create_dev_owner(conn, base_url)
    finally:
        await pool.close()
    data = {
        "base_url": creds.base_url,
        "api_key": creds.api_key,
        "workspace_id": creds.workspace_id,
        "email": creds.email,
        "password": creds.password,
    }
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return data


def curl_hint(api_key: str, base_url: str) -> str:
    """A copy-pasteable command that creates a link, one option per line with shell continuations."""
    lines = [
        f"curl -H 'Authorization: Bearer {api_key}'",
        "-H 'Content-Type: application/json'",
        """-d '{"url":"https://example.com"}'""",
        f"{base_url}/api/v1/links",
    ]
    return "  try: " + " \\\n         ".join(lines)


def print_curl_hint(api_key: str, base_url: str) -> None:
    # soft_wrap: rich would otherwise break the lines at the console width (80 columns when
    # stdout is a log file), and a shell cannot run a command broken without a backslash.
    console.print(curl_hint(api_key, base_url), soft_wrap=True, markup=False)


def _wait_healthy(url: str, procs: list[ManagedProcess], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive:
                console.print(f"[red]{proc.name} exited[/red] (code {proc.returncode}); last log lines:")
                console.print(proc.log_tail(30))
                return False
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our loopback url
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def run_dev(settings: Settings, *, port: int | None = None, data_dir: str | None = None) -> int:
    started = time.monotonic()
    data = Path(data_dir or settings.data_dir).resolve()
    (data / "logs").mkdir(parents=True, exist_ok=True)
    port = port or settings.port
    if port_open(settings.host, port):
        console.print(f"[red]port {port} on {settings.host} is already in use[/red]; pass --port")
        return 2
    worker_port = (
        settings.worker_port if not port_open(settings.worker_host, settings.worker_port) else free_port()
    )

    console.print(f"LinkRift dev: data in {data}")
    services = asyncio.run(resolve_services(settings, data))
    procs: list[ManagedProcess] = []
    try:
        env = child_env(settings, services, data, port, worker_port)
        linkrift = [sys.executable, "-m", "cli.main"]
        cwd = Path(__file__).resolve().parent.parent
        migrate = ManagedProcess(
            "migrate", [*linkrift, "migrate", "up"], log_dir=data / "logs", env=env, cwd=cwd
        )
        migrate.start()
        if migrate.wait(timeout=120) != 0:
            console.print("[red]migrations failed[/red]:\n" + migrate.log_tail(30))
            return 1
        topics = Topics(settings.namespace)
        asyncio.run(
            ensure_topics(
                services.kafka_bootstrap,
                {
                    topics.clicks_raw: settings.topic_partitions,
                    topics.links_changes: settings.topic_partitions,
                },
            )
        )
        creds = asyncio.run(_bootstrap(services.database_url, env["LINKRIFT_BASE_URL"], data))
        worker = ManagedProcess(
            "worker", [*linkrift, "worker"], log_dir=data / "logs", env=env, cwd=cwd
        ).start()
        api = ManagedProcess("api", [*linkrift, "api"], log_dir=data / "logs", env=env, cwd=cwd).start()
        procs = [worker, api]
        if not _wait_healthy(f"{env['LINKRIFT_BASE_URL']}/healthz", procs, timeout=90):
            console.print("[red]LinkRift did not become healthy[/red]; see logs in " + str(data / "logs"))
            return 1
        elapsed = time.monotonic() - started
        console.print(
            f"\n[bold green]LinkRift is running[/bold green] at {creds['base_url']} (ready in {elapsed:.1f}s)"
        )
        console.print(f"  web app:      {creds['base_url']}/app  (log in with the owner login below)")
        console.print(f"  API key:      {creds['api_key']}")
        console.print(f"  workspace:    {creds['workspace_id']}")
        console.print(f"  owner login:  {creds['email']} / {creds['password']}")
        console.print(f"  credentials:  {data / 'credentials.json'}")
        console.print(f"  logs:         {data / 'logs'}")
        console.print(f"  worker:       http://{settings.worker_host}:{worker_port}/metrics")
        for line in service_lines(services, env["CLICKHOUSE_URL"]):
            console.print(f"  {line}")
        print_curl_hint(creds["api_key"], creds["base_url"])
        console.print("Press Ctrl-C to stop.")
        return _supervise(procs)
    finally:
        stop_platform(procs, services)
        console.print("LinkRift dev stopped.")


# How long each child may take to stop cleanly before it is killed: the api hands its journaled
# clicks to the broker and waits (up to 5 s) until the worker made them durable; the worker then
# finishes its batch and sinks, records them and leaves the group.
API_STOP_SECONDS = 30.0
WORKER_STOP_SECONDS = 40.0


def stop_platform(procs: list[ManagedProcess], services: ResolvedServices) -> None:
    """The clean stop, in order: the api first (no new clicks; the ones it journaled reach the
    broker and, while the worker still runs, the worker's stores), then the worker (drains what
    it fetched, flushes every store, commits), then the services it used."""
    for proc in sorted(procs, key=lambda p: p.name != "api"):
        began = time.monotonic()
        code = proc.stop(timeout=API_STOP_SECONDS if proc.name == "api" else WORKER_STOP_SECONDS)
        console.print(f"{proc.name} stopped (code {code}) in {time.monotonic() - began:.1f}s")
    services.stop()


def service_lines(services: ResolvedServices, clickhouse_url: str) -> list[str]:
    """One line per backing service: where it is and whether `linkrift dev` started it (chDB runs
    inside the worker: embedded unless CLICKHOUSE_URL was set)."""
    started = {s.name for s in services.started}
    if "CLICKHOUSE_URL" not in os.environ:
        started.add("clickhouse")
    rows = [
        ("postgres", redact(services.database_url), "postgres"),
        ("redis", redact(services.redis_url), "redis"),
        ("kafka", services.kafka_broker, "kafka"),
        ("clickhouse", redact(clickhouse_url), "clickhouse"),
    ]
    return [
        f"{name + ':':<13} {url} ({'embedded' if key in started else 'configured'})"
        for name, url, key in rows
    ]


class RestartPolicy:
    """When to restart a child that exited unexpectedly: after 1, 2, 4 ... up to 30 s, and not at
    all once it has crashed `limit` times within `window` seconds (a crash loop is reported, not
    hidden). The worker and the api are safe to restart at any point: clicks are journaled by the
    api and counted exactly once by the worker whatever it was doing when it died."""

    def __init__(self, limit: int = 5, window: float = 120.0, max_delay: float = 30.0) -> None:
        self.limit = limit
        self.window = window
        self.max_delay = max_delay
        self.crashes: dict[str, list[float]] = {}

    def next_delay(self, name: str, now: float) -> float | None:
        """Seconds to wait before restarting `name`, or None to give up."""
        recent = [t for t in self.crashes.get(name, []) if now - t < self.window]
        recent.append(now)
        self.crashes[name] = recent
        if len(recent) > self.limit:
            return None
        return min(self.max_delay, 2.0 ** (len(recent) - 1))


def _supervise(procs: list[ManagedProcess], policy: RestartPolicy | None = None) -> int:
    stop = False
    policy = policy or RestartPolicy()
    restart_at: dict[str, float] = {}

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop:
        now = time.monotonic()
        for proc in procs:
            if proc.alive:
                continue
            if proc.name in restart_at:
                if now >= restart_at[proc.name]:
                    del restart_at[proc.name]
                    proc.start()
                    console.print(f"[yellow]{proc.name} restarted[/yellow] (pid {proc.pid})")
                continue
            console.print(f"[red]{proc.name} exited unexpectedly[/red] (code {proc.returncode}):")
            console.print(proc.log_tail(30))
            delay = policy.next_delay(proc.name, now)
            if delay is None:
                console.print(
                    f"[red]{proc.name} crashed {policy.limit + 1} times within {policy.window:.0f} s; "
                    "stopping LinkRift dev[/red]"
                )
                return 1
            console.print(f"restarting {proc.name} in {delay:.0f} s")
            restart_at[proc.name] = now + delay
        time.sleep(0.5)
    return 0
