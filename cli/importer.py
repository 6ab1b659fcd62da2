"""`linkrift import FILE --workspace ID`: bulk-import a CSV export (Bitly, Shlink, Kutt, YOURLS or
plain url,short_code,title,tags) into a workspace, with a progress bar and a per-row error report."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from uuid import UUID

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.audit import AuditContext
from engine.config import Settings
from engine.db.pool import create_pool
from engine.errors import QuotaExceeded, ValidationFailed
from engine.links.importers import FORMATS, ImportReport, ImportTarget, ParsedImport, import_rows, parse_csv
from engine.naming import Topics


async def run_import(
    settings: Settings, parsed: ParsedImport, workspace_id: str, user_id: str | None, console: Console
) -> ImportReport:
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            owner = await conn.fetchval(
                "SELECT owner_id FROM workspaces WHERE id = $1 AND deleted_at IS NULL", workspace_id
            )
            if owner is None:
                raise ValidationFailed(f"workspace {workspace_id} not found", field="workspace")
            if user_id is not None:
                member = await conn.fetchval(
                    "SELECT 1 FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
                    workspace_id,
                    user_id,
                )
                if not member:
                    raise ValidationFailed(f"user {user_id} is not a member of the workspace", field="user")
            target = ImportTarget(
                workspace_id=workspace_id,
                user_id=user_id or str(owner),
                topic=Topics(settings.namespace).links_changes,
                audit=AuditContext(actor_id=user_id or str(owner), user_agent="linkrift import (cli)"),
            )
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console) as progress:
                task = progress.add_task(f"importing {parsed.format}", total=len(parsed.rows))
                return await import_rows(conn, target, parsed, progress=lambda n: progress.advance(task, n))
    finally:
        await pool.close()


def _uuid(value: str) -> str:
    try:
        return str(UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {value!r}") from None


def cmd_import(args: argparse.Namespace) -> int:
    from cli.main import _settings

    console = Console(stderr=True)
    path = Path(args.file)
    if not path.is_file():
        console.print(f"[red]linkrift import: no such file: {path}")
        return 2
    settings = _settings()
    try:
        text = path.read_text(encoding="utf-8-sig")
        parsed = parse_csv(text, args.format, blocked_hosts=settings.blocked_hosts)
        report = asyncio.run(run_import(settings, parsed, args.workspace, args.user, console))
    except (ValidationFailed, QuotaExceeded) as exc:
        console.print(f"[red]linkrift import: {exc.field}: {exc.message}")
        return 2
    except UnicodeDecodeError:
        console.print("[red]linkrift import: the file must be UTF-8 text")
        return 2
    for error in report.errors:
        console.print(f"row {error.row}: {error.field}: {error.message}", markup=False)
    if report.failed > len(report.errors):
        console.print(f"... and {report.failed - len(report.errors)} more failed rows")
    sys.stdout.write(
        f"format={report.format} rows={report.total_rows} imported={report.imported} failed={report.failed}\n"
    )
    return 0 if report.failed == 0 else 1


def add_import_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "import", help="import links from a CSV export (Bitly, Shlink, Kutt, YOURLS, plain)"
    )
    parser.add_argument("file", help="the CSV file")
    parser.add_argument("--workspace", required=True, type=_uuid, help="workspace id to import into")
    parser.add_argument("--format", choices=FORMATS, default=None, help="skip header detection")
    parser.add_argument(
        "--user", type=_uuid, default=None, help="owner of the new links (default: workspace owner)"
    )
    parser.set_defaults(func=cmd_import)
