"""Small builders for parameterised PostgreSQL statements (column names come from code, never input)."""

from __future__ import annotations

from collections.abc import Iterable


def set_clause(columns: Iterable[str], start: int) -> str:
    """`a = $start, b = $start+1, ...` for an UPDATE ... SET over `columns` in order."""
    return ", ".join(f"{column} = ${n}" for n, column in enumerate(columns, start=start))
