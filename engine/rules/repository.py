"""Link rules in PostgreSQL: CRUD scoped by workspace, validated by `validate_rule`, and each
change announced on `links.changes` (event `rules`) so redirect caches reload the link's rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.audit import AuditContext, write_audit
from engine.errors import NotFound, ValidationFailed
from engine.links.repository import change_payload, get_link, write_outbox
from engine.rules.conditions import validate_rule

MAX_RULES_PER_LINK = 50
MAX_PRIORITY = 1_000_000
RULE_COLUMNS = (
    "id, link_id, rule_type, priority, is_active, conditions, destination_url, weight, created_at, updated_at"
)


class RuleNotFound(NotFound):
    code = "rule_not_found"


def rule_json(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["id"] = str(row["id"])
    out["link_id"] = str(row["link_id"])
    out["created_at"] = row["created_at"].isoformat()
    out["updated_at"] = row["updated_at"].isoformat()
    return out


def validate_rule_input(data: Mapping[str, Any]) -> dict[str, Any]:
    """A complete rule (rule_type, conditions, destination_url, weight, priority, is_active),
    normalized; ValidationFailed names the field."""
    priority = data.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > MAX_PRIORITY:
        raise ValidationFailed(f"priority must be an integer within ±{MAX_PRIORITY}", field="priority")
    is_active = data.get("is_active", True)
    if not isinstance(is_active, bool):
        raise ValidationFailed("is_active must be true or false", field="is_active")
    rule_type = data.get("rule_type")
    if not isinstance(rule_type, str):
        raise ValidationFailed("rule_type is required", field="rule_type")
    destination = data.get("destination_url")
    if destination is not None and not isinstance(destination, str):
        raise ValidationFailed("destination_url must be a string", field="destination_url")
    conditions = validate_rule(rule_type, data.get("conditions") or {}, destination, data.get("weight"))
    return {
        "rule_type": rule_type,
        "priority": priority,
        "is_active": is_active,
        "conditions": conditions,
        # The column is NOT NULL; an A/B rule without its own destination sends to its variants.
        "destination_url": destination or "",
        "weight": data.get("weight"),
    }


async def list_rules(conn: asyncpg.Connection, workspace_id: str, link_id: str) -> list[asyncpg.Record]:
    await get_link(conn, workspace_id, link_id)
    rows = await conn.fetch(
        f"SELECT {RULE_COLUMNS} FROM link_rules WHERE link_id = $1 ORDER BY priority DESC, id", link_id
    )
    return list(rows)


async def get_rule(conn: asyncpg.Connection, workspace_id: str, link_id: str, rule_id: str) -> asyncpg.Record:
    await get_link(conn, workspace_id, link_id)
    row = await conn.fetchrow(
        f"SELECT {RULE_COLUMNS} FROM link_rules WHERE id = $1 AND link_id = $2", rule_id, link_id
    )
    if row is None:
        raise RuleNotFound("rule not found")
    return row


async def _announce(conn: asyncpg.Connection, topic: str, link: asyncpg.Record) -> None:
    await write_outbox(conn, topic, str(link["id"]), change_payload("rules", link))


async def create_rule(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    topic: str,
    workspace_id: str,
    link_id: str,
    data: Mapping[str, Any],
) -> asyncpg.Record:
    rule = validate_rule_input(data)
    async with conn.transaction():
        link = await get_link(conn, workspace_id, link_id, lock=True)
        count = await conn.fetchval("SELECT count(*) FROM link_rules WHERE link_id = $1", link_id)
        if count >= MAX_RULES_PER_LINK:
            raise ValidationFailed(f"a link can have at most {MAX_RULES_PER_LINK} rules", field="rule_type")
        row = await conn.fetchrow(
            f"""INSERT INTO link_rules (link_id, rule_type, priority, is_active, conditions, destination_url, weight)
                VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {RULE_COLUMNS}""",
            link_id,
            rule["rule_type"],
            rule["priority"],
            rule["is_active"],
            rule["conditions"],
            rule["destination_url"],
            rule["weight"],
        )
        assert row is not None
        await _announce(conn, topic, link)
        await write_audit(conn, ctx, workspace_id, "rule.created", "link_rule", str(row["id"]), new=rule)
    return row


async def update_rule(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    topic: str,
    workspace_id: str,
    link_id: str,
    rule_id: str,
    changes: Mapping[str, Any],
) -> asyncpg.Record:
    """PATCH a rule: the merged rule is validated as a whole (conditions must fit the type)."""
    async with conn.transaction():
        link = await get_link(conn, workspace_id, link_id, lock=True)
        old = await get_rule(conn, workspace_id, link_id, rule_id)
        merged = {
            k: old[k]
            for k in ("rule_type", "priority", "is_active", "conditions", "destination_url", "weight")
        }
        merged.update(changes)
        rule = validate_rule_input(merged)
        row = await conn.fetchrow(
            f"""UPDATE link_rules SET rule_type = $2, priority = $3, is_active = $4, conditions = $5,
                       destination_url = $6, weight = $7, updated_at = now()
                WHERE id = $1 RETURNING {RULE_COLUMNS}""",
            rule_id,
            rule["rule_type"],
            rule["priority"],
            rule["is_active"],
            rule["conditions"],
            rule["destination_url"],
            rule["weight"],
        )
        assert row is not None
        await _announce(conn, topic, link)
        old_view = {k: old[k] for k in rule}
        await write_audit(
            conn, ctx, workspace_id, "rule.updated", "link_rule", rule_id, old=old_view, new=rule
        )
    return row


async def delete_rule(
    conn: asyncpg.Connection, ctx: AuditContext, topic: str, workspace_id: str, link_id: str, rule_id: str
) -> None:
    async with conn.transaction():
        link = await get_link(conn, workspace_id, link_id, lock=True)
        old = await get_rule(conn, workspace_id, link_id, rule_id)
        await conn.execute("DELETE FROM link_rules WHERE id = $1", rule_id)
        await _announce(conn, topic, link)
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "rule.deleted",
            "link_rule",
            rule_id,
            old={"rule_type": old["rule_type"], "destination_url": old["destination_url"]},
        )
