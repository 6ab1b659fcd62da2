"""Small builders for parameterised PostgreSQL statements (column names come from code, never input),
and the one "get a row or NotFound" helper."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from engine.errors import LinkRiftError


def set_clause(columns: Iterable[str], start: int) -> str:
    """`a = $start, b = $start+1, ...` for an UPDATE ... SET over `columns` in order."""
    return ", ".join(f"{column} = ${n}" for n, column in enumerate(columns, start=start))


async def fetch_one(
    conn: asyncpg.Connection, missing: LinkRiftError, query: str, *args: object
) -> asyncpg.Record:
    """The row `query` returns; raises `missing` (a NotFound naming the resource) when there is
    none. Every workspace-scoped "get" uses it: another workspace's row is simply not found."""
    row = await conn.fetchrow(query, *args)
    if row is None:
        raise missing
    return row
