"""`linkrift`: one CLI for every process — api, worker, migrate, dev."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence

from engine.config import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"linkrift: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_api(args: argparse.Namespace) -> int:
    settings = _settings()
    host = args.host or settings.host
    port = args.port or settings.port
    if args.workers > 1:
        return _run_api_workers(args.workers, host, port)
    import web as web_app
    from api import front
    from api.app import create_app
    from cli.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    # The redirect front owns the port and hands everything but cached short links to aiohttp.
    front.run(lambda: create_app(settings, pages=web_app.setup), host, port, reuse_port=args.reuse_port)
    return 0


def _run_api_workers(workers: int, host: str, port: int) -> int:
    """N api processes sharing one port through SO_REUSEPORT; the kernel spreads connections.

    SIGTERM and SIGINT to this parent are passed on to every child, so `docker stop` and
    Ctrl-C both shut the whole set down cleanly; a SIGKILLed parent takes them with it.
    """
    import signal

    argv = [sys.executable, "-m", "cli.main", "api", "--host", host, "--port", str(port), "--reuse-port"]
    from cli.procs import die_with_parent

    # The children share this process's group (a killpg reaches them all) and die with it.
    children = [
        subprocess.Popen(argv, preexec_fn=die_with_parent(signal.SIGTERM))  # noqa: S603 - our own entry point
        for _ in range(workers)
    ]

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(child.wait() for child in children)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.port:
        settings = settings.model_copy(update={"worker_port": args.port})
    from faust.worker import Worker

    from cli.logs import setup_logging
    from streams.app import create_app

    app, _res = create_app(settings)
    setup_logging(settings.log_level, settings.log_format)
    # override_logging=False: mode would otherwise replace our handler with its own text format
    # when the worker starts (LINKRIFT_LOG_FORMAT=json must hold for the worker too).
    worker = Worker(
        app,
        loglevel=settings.log_level,
        logfile=None,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    # Faust's terminal spinner writes cursor escapes to stdout, which would break the one-record-
    # per-line log stream; "Ready" is logged instead.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from cli.migrate import run_migrate

    return asyncio.run(run_migrate(_settings(), args))


def cmd_dev(args: argparse.Namespace) -> int:
    from cli.dev import run_dev

    return run_dev(_settings(), port=args.port, data_dir=args.data_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linkrift", description="LinkRift link management platform")
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="run the redirect front end and management API")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    api.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run the Faust stream worker")
    worker.add_argument("--port", type=int, default=None, help="worker web port (metrics, internal)")
    worker.set_defaults(func=cmd_worker)

    mig = sub.add_parser("migrate", help="PostgreSQL and ClickHouse schema migrations")
    msub = mig.add_subparsers(dest="action", required=True)
    up = msub.add_parser("up", help="apply pending migrations")
    up.add_argument("n", nargs="?", type=int, default=None, help="apply at most N")
    down = msub.add_parser("down", help="roll back migrations (default 1; 'all' or --all for every one)")
    down.add_argument("n", nargs="?", default="1")
    down.add_argument("--all", action="store_true")
    msub.add_parser("status", help="show the applied version and pending migrations")
    force = msub.add_parser("force", help="set the version without running anything (clears dirty)")
    force.add_argument("version", type=int)
    create = msub.add_parser("create", help="create a new pair of migration files")
    create.add_argument("name")
    for p in (up, down):
        p.add_argument("--postgres-only", action="store_true", help="leave ClickHouse alone")
    mig.set_defaults(func=cmd_migrate)

    dev = sub.add_parser("dev", help="run everything on this machine with embedded services")
    dev.add_argument("--port", type=int, default=None)
    dev.add_argument("--data-dir", default=None)
    dev.set_defaults(func=cmd_dev)

    from cli.importer import add_import_parser

    add_import_parser(sub)
    from cli.workspace import add_workspace_parser

    add_workspace_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
