"""Link rules in PostgreSQL: the `link_rules` rows of one link, read and written as StoredRule.

Persistence only. The use cases (workspace check, validation, the `links.changes` event, audit)
are in engine/links/rule_service.py: a link's rules are changed through the link.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from engine.db.sql import fetch_one
from engine.errors import NotFound
from engine.rules.models import StoredRule

_COLUMNS = (
    "id, link_id, rule_type, priority, is_active, conditions, destination_url, weight, created_at, updated_at"
)


class RuleNotFound(NotFound):
    code = "rule_not_found"


def _rule(row: asyncpg.Record) -> StoredRule:
    return StoredRule(
        id=str(row["id"]),
        link_id=str(row["link_id"]),
        rule_type=row["rule_type"],
        priority=row["priority"],
        is_active=row["is_active"],
        conditions=row["conditions"],
        destination_url=row["destination_url"],
        weight=row["weight"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _values(rule: dict[str, Any]) -> tuple[Any, ...]:
    """A validated rule's column values, in the order the INSERT and UPDATE below name them."""
    return tuple(
        rule[k] for k in ("rule_type", "priority", "is_active", "conditions", "destination_url", "weight")
    )


async def list_rules(conn: asyncpg.Connection, link_id: str) -> list[StoredRule]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM link_rules WHERE link_id = $1 ORDER BY priority DESC, id", link_id
    )
    return [_rule(r) for r in rows]


async def get_rule(conn: asyncpg.Connection, link_id: str, rule_id: str) -> StoredRule:
    """The rule of that link; RuleNotFound otherwise."""
    row = await fetch_one(
        conn,
        RuleNotFound("rule not found"),
        f"SELECT {_COLUMNS} FROM link_rules WHERE id = $1 AND link_id = $2",
        rule_id,
        link_id,
    )
    return _rule(row)


async def count_rules(conn: asyncpg.Connection, link_id: str) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM link_rules WHERE link_id = $1", link_id)
    return count


async def insert_rule(conn: asyncpg.Connection, link_id: str, rule: dict[str, Any]) -> StoredRule:
    """Store a validated rule (engine/rules/validation.py)."""
    row = await conn.fetchrow(
        f"""INSERT INTO link_rules (link_id, rule_type, priority, is_active, conditions, destination_url, weight)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}""",
        link_id,
        *_values(rule),
    )
    assert row is not None
    return _rule(row)


async def update_rule(conn: asyncpg.Connection, rule_id: str, rule: dict[str, Any]) -> StoredRule:
    """Replace a rule's fields with a validated rule."""
    row = await conn.fetchrow(
        f"""UPDATE link_rules SET rule_type = $2, priority = $3, is_active = $4, conditions = $5,
                   destination_url = $6, weight = $7, updated_at = now()
            WHERE id = $1 RETURNING {_COLUMNS}""",
        rule_id,
        *_values(rule),
    )
    assert row is not None
    return _rule(row)


async def delete_rule(conn: asyncpg.Connection, rule_id: str) -> None:
    await conn.execute("DELETE FROM link_rules WHERE id = $1", rule_id)
