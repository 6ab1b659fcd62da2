"""`linkrift workspace suspend ID --reason TEXT` / `linkrift workspace resume ID`: an operator
takes a workspace's links offline (they answer like deleted links, in every cache tier, once the
worker's link-change agent has run) and brings them back. Exit codes: 0 done, 1 refused (already
in that state, database unreachable), 2 bad input (malformed or unknown id, bad reason)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from uuid import UUID

import asyncpg

from engine.accounts.workspaces import resume_workspace, suspend_workspace
from engine.audit import AuditContext
from engine.config import Settings
from engine.db.pool import create_pool
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.naming import Topics

_OPERATOR = "linkrift workspace (cli)"


async def run_workspace_action(settings: Settings, action: str, workspace_id: str, reason: str | None) -> str:
    """Suspend or resume; returns the workspace's `suspended_at` afterwards ('' when resumed)."""
    topic = Topics(settings.namespace).links_changes
    ctx = AuditContext(actor_id=None, user_agent=_OPERATOR)
    pool = await create_pool(settings.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            if action == "suspend":
                row = await suspend_workspace(conn, ctx, workspace_id, reason or "", topic)
            else:
                row = await resume_workspace(conn, ctx, workspace_id, topic)
    finally:
        await pool.close()
    return row["suspended_at"].isoformat() if row["suspended_at"] else ""


def _uuid(value: str) -> str:
    try:
        return str(UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a workspace id (a UUID): {value!r}") from None


def cmd_workspace(args: argparse.Namespace) -> int:
    from cli.main import _settings

    prog = f"linkrift workspace {args.action}"
    settings = _settings()
    try:
        suspended_at = asyncio.run(
            run_workspace_action(settings, args.action, args.workspace_id, getattr(args, "reason", None))
        )
    except (NotFound, ValidationFailed) as exc:
        print(f"{prog}: {exc.field}: {exc.message}", file=sys.stderr)
        return 2
    except Conflict as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"{prog}: database error: {exc}", file=sys.stderr)
        return 1
    if args.action == "suspend":
        print(f"workspace {args.workspace_id} suspended at {suspended_at}")
    else:
        print(f"workspace {args.workspace_id} resumed")
    return 0


def add_workspace_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("workspace", help="operator actions on a workspace (suspend, resume)")
    actions = parser.add_subparsers(dest="action", required=True)
    suspend = actions.add_parser(
        "suspend", help="take the workspace's links offline (they answer like deleted links)"
    )
    suspend.add_argument("workspace_id", type=_uuid, help="the workspace's id")
    suspend.add_argument("--reason", required=True, help="why (kept on the workspace and in the audit log)")
    resume = actions.add_parser("resume", help="lift a suspension: the links redirect again")
    resume.add_argument("workspace_id", type=_uuid, help="the workspace's id")
    parser.set_defaults(func=cmd_workspace)
