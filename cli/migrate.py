"""`linkrift migrate`: PostgreSQL migrations (golang-migrate style) plus the ClickHouse DDL."""

from __future__ import annotations

import argparse
import asyncio
import sys

from rich.console import Console

from engine.config import Settings
from engine.db.migrate import (
    DEFAULT_DIRECTORY,
    Migration,
    MigrationError,
    Migrator,
    create,
    ensure_database,
)

console = Console(stderr=True, highlight=False)


def _step(direction: str, migration: Migration) -> None:
    console.print(f"  {direction:>4} {migration.version:06d} {migration.name}")


async def _clickhouse(settings: Settings, action: str) -> list[int]:
    from engine.db.clickhouse import create_clickhouse_client
    from engine.db.clickhouse_schema import apply_clickhouse_schema, drop_clickhouse_schema

    def work() -> list[int]:
        client = create_clickhouse_client(settings)
        try:
            return apply_clickhouse_schema(client) if action == "up" else drop_clickhouse_schema(client)
        finally:
            client.close()

    return await asyncio.to_thread(work)


async def run_migrate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.action == "create":
            up, down = create(DEFAULT_DIRECTORY, args.name)
            console.print(f"created {up}\ncreated {down}")
            return 0
        if await ensure_database(settings.database_url):
            console.print("created database")
        migrator = Migrator(settings.database_url, on_step=_step)
        if args.action == "status":
            st = await migrator.status()
            console.print(
                f"version: {st.version if st.version is not None else 'none'}{' (dirty)' if st.dirty else ''}"
            )
            for m in st.pending:
                console.print(f"  pending {m.version:06d} {m.name}")
            return 1 if st.dirty else 0
        if args.action == "force":
            await migrator.force(args.version)
            console.print(f"forced version {args.version}")
            return 0
        if args.action == "up":
            applied = await migrator.up(args.n)
            console.print(f"postgres: applied {len(applied)} migration(s)")
            if not args.postgres_only:
                ch = await _clickhouse(settings, "up")
                console.print(f"clickhouse: applied {len(ch)} migration(s)")
            return 0
        if args.action == "down":
            everything = args.all or str(args.n).lower() == "all"
            if not everything and not str(args.n).isdigit():
                console.print("linkrift migrate down: N must be a number or 'all'")
                return 2
            steps = None if everything else int(args.n)
            reverted = await migrator.down(steps)
            console.print(f"postgres: reverted {len(reverted)} migration(s)")
            if everything and not args.postgres_only:
                ch = await _clickhouse(settings, "down")
                console.print(f"clickhouse: reverted {len(ch)} migration(s)")
            return 0
    except MigrationError as exc:
        console.print(f"linkrift migrate: {exc}")
        return 1
    except OSError as exc:
        console.print(f"linkrift migrate: cannot reach PostgreSQL at DATABASE_URL ({exc})")
        return 1
    print(f"unknown action {args.action}", file=sys.stderr)
    return 2
