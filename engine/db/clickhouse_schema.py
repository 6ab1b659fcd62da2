"""ClickHouse schema migrations: the `clickhouse/NNNNNN_name.{up,down}.sql` files.

Applied versions are rows of the ClickHouse table `schema_migrations`. Every statement is
idempotent (IF [NOT] EXISTS), so applying is safe at every worker start, even from several
workers at once or after a run that stopped half-way.
"""

from __future__ import annotations

import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

from engine.config import REPO_ROOT
from engine.db.migrate import Migration, discover

DEFAULT_DIRECTORY = REPO_ROOT / "clickhouse"

_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version UInt64, applied_at DateTime DEFAULT now()) "
    "ENGINE = MergeTree ORDER BY version"
)

# Statements end with `;` at the end of a line.
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


def split_statements(sql: str) -> list[str]:
    """Split a file into statements, dropping chunks that hold only comments or whitespace."""
    statements = []
    for chunk in _STATEMENT_END.split(sql):
        code = [line for line in chunk.splitlines() if line.strip() and not line.strip().startswith("--")]
        if code:
            statements.append(chunk.strip())
    return statements


def _applied_versions(client: Client) -> set[int]:
    client.command(_CREATE_TABLE)
    rows = client.query("SELECT DISTINCT version FROM schema_migrations").result_rows
    return {int(row[0]) for row in rows}


def _execute_file(client: Client, path: Path) -> None:
    for statement in split_statements(path.read_text()):
        client.command(statement)


def apply_clickhouse_schema(client: Client, directory: Path = DEFAULT_DIRECTORY) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied by this call."""
    applied = _applied_versions(client)
    done: list[int] = []
    for migration in discover(directory):
        if migration.version in applied:
            continue
        _execute_file(client, migration.up_path)
        client.insert("schema_migrations", [[migration.version]], column_names=["version"])
        done.append(migration.version)
    return done


def drop_clickhouse_schema(client: Client, directory: Path = DEFAULT_DIRECTORY) -> list[int]:
    """Run the down files of every applied migration, newest first; return the versions reverted."""
    applied = _applied_versions(client)
    reverted: list[int] = []
    migrations: list[Migration] = discover(directory)
    for migration in reversed(migrations):
        if migration.version not in applied:
            continue
        _execute_file(client, migration.down_path)
        client.command(
            "DELETE FROM schema_migrations WHERE version = {version:UInt64}",
            parameters={"version": migration.version},
        )
        reverted.append(migration.version)
    return reverted
