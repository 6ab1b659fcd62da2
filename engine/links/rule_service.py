"""Use cases on a link's redirect rules: each checks the link belongs to the workspace, validates
the rule (engine/rules/validation.py), stores it (engine/rules/repository.py), announces the
change on `links.changes` (event `rules`, so redirect caches reload the link's rules) and writes
the audit row, in one transaction. The `Actor` is the one of link changes (engine/links/service.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.audit import write_audit
from engine.errors import ValidationFailed
from engine.links.models import StoredLink
from engine.links.repository import get_link
from engine.links.service import Actor
from engine.outbox import link_change, write_outbox
from engine.rules import repository
from engine.rules.models import StoredRule
from engine.rules.validation import MAX_RULES_PER_LINK, validate_rule_input


async def list_rules(conn: asyncpg.Connection, workspace_id: str, link_id: str) -> list[StoredRule]:
    await get_link(conn, workspace_id, link_id)
    return await repository.list_rules(conn, link_id)


async def get_rule(conn: asyncpg.Connection, workspace_id: str, link_id: str, rule_id: str) -> StoredRule:
    await get_link(conn, workspace_id, link_id)
    return await repository.get_rule(conn, link_id, rule_id)


async def _announce(conn: asyncpg.Connection, topic: str, link: StoredLink) -> None:
    await write_outbox(conn, topic, link.id, link_change("rules", link))


async def create_rule(
    conn: asyncpg.Connection, actor: Actor, link_id: str, data: Mapping[str, Any]
) -> StoredRule:
    rule = validate_rule_input(data)
    async with conn.transaction():
        link = await get_link(conn, actor.workspace_id, link_id, lock=True)
        if await repository.count_rules(conn, link_id) >= MAX_RULES_PER_LINK:
            raise ValidationFailed(f"a link can have at most {MAX_RULES_PER_LINK} rules", field="rule_type")
        stored = await repository.insert_rule(conn, link_id, rule)
        await _announce(conn, actor.topic, link)
        await write_audit(
            conn, actor.audit, actor.workspace_id, "rule.created", "link_rule", stored.id, new=rule
        )
    return stored


async def update_rule(
    conn: asyncpg.Connection, actor: Actor, link_id: str, rule_id: str, changes: Mapping[str, Any]
) -> StoredRule:
    """PATCH a rule: the merged rule is validated as a whole (conditions must fit the type)."""
    async with conn.transaction():
        link = await get_link(conn, actor.workspace_id, link_id, lock=True)
        old = await repository.get_rule(conn, link_id, rule_id)
        merged = old.editable()
        merged.update(changes)
        rule = validate_rule_input(merged)
        stored = await repository.update_rule(conn, rule_id, rule)
        await _announce(conn, actor.topic, link)
        old_view = old.editable()
        await write_audit(
            conn,
            actor.audit,
            actor.workspace_id,
            "rule.updated",
            "link_rule",
            rule_id,
            old={k: old_view[k] for k in rule},
            new=rule,
        )
    return stored


async def delete_rule(conn: asyncpg.Connection, actor: Actor, link_id: str, rule_id: str) -> None:
    async with conn.transaction():
        link = await get_link(conn, actor.workspace_id, link_id, lock=True)
        old = await repository.get_rule(conn, link_id, rule_id)
        await repository.delete_rule(conn, rule_id)
        await _announce(conn, actor.topic, link)
        await write_audit(
            conn,
            actor.audit,
            actor.workspace_id,
            "rule.deleted",
            "link_rule",
            rule_id,
            old={"rule_type": old.rule_type, "destination_url": old.destination_url},
        )
