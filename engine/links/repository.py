"""Links in PostgreSQL: create, read, resolve for redirects. Every change writes the outbox (engine/outbox.py)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import orjson

from engine.db.sql import fetch_one
from engine.errors import LinkNotFound, ShortCodeTaken
from engine.links.models import CachedLink, StoredLink
from engine.links.shortcodes import generate_code
from engine.outbox import link_change, write_outbox

# A link's total is what LinkRift tracked (the `total_clicks` column, written by the worker) plus
# what an import brought from the source shortener (`imported_clicks`); both parts are exposed.
LINK_COLUMNS = (
    "id, user_id, workspace_id, domain_id, url, short_code, title, description, favicon_url, og_image_url, "
    "is_active, "
    "expires_at, max_clicks, total_clicks + imported_clicks AS total_clicks, total_clicks AS tracked_clicks, "
    "imported_clicks, unique_clicks, redirect_type, forward_query, "
    "utm_source, utm_medium, utm_campaign, utm_term, utm_content, created_at, updated_at, deleted_at, "
    "imported_at, (password_hash IS NOT NULL) AS has_password"
)

# The spec's GetLinkWithRules, scoped by domain: codes are unique per domain, not globally.
_GET_LINK_WITH_RULES = """
SELECT l.id, l.workspace_id, l.domain_id, l.short_code, l.url, l.is_active, l.expires_at,
       l.max_clicks, l.password_hash, l.redirect_type, l.forward_query,
       l.utm_source, l.utm_medium, l.utm_campaign, l.utm_term, l.utm_content,
       COALESCE(json_agg(json_build_object(
           'id', r.id, 'rule_type', r.rule_type, 'priority', r.priority,
           'conditions', r.conditions, 'destination_url', r.destination_url, 'weight', r.weight)
           ORDER BY r.priority DESC, r.id) FILTER (WHERE r.id IS NOT NULL), '[]') AS rules
FROM links l
JOIN workspaces w ON w.id = l.workspace_id AND w.deleted_at IS NULL AND w.suspended_at IS NULL
LEFT JOIN link_rules r ON r.link_id = l.id AND r.is_active = TRUE
WHERE l.short_code = $1 AND l.domain_id IS NOT DISTINCT FROM $2 AND l.deleted_at IS NULL
GROUP BY l.id
"""


async def create_link(
    conn: asyncpg.Connection,
    *,
    topic: str,
    user_id: str,
    workspace_id: str,
    url: str,
    short_code: str | None,
    domain_id: str | None = None,
    title: str | None = None,
    description: str | None = None,
    is_active: bool = True,
    max_clicks: int | None = None,
    expires_at: datetime | None = None,
    password_hash: str | None = None,
    redirect_type: int = 302,
    forward_query: bool = False,
    utm: dict[str, str] | None = None,
) -> StoredLink:
    """Insert a link and its `created` outbox event in one transaction.

    A generated code retries on collision; a custom code that is taken raises ShortCodeTaken.
    """
    utm = utm or {}
    attempts = 1 if short_code else 8
    for attempt in range(attempts):
        code = short_code or generate_code(7 + attempt // 4)
        try:
            async with conn.transaction():
                row = await conn.fetchrow(
                    f"""INSERT INTO links (user_id, workspace_id, domain_id, url, short_code, title,
                          max_clicks, expires_at, password_hash, redirect_type, forward_query,
                          utm_source, utm_medium, utm_campaign, utm_term, utm_content, description,
                          is_active)
                        VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)
                        RETURNING {LINK_COLUMNS}""",
                    user_id,
                    workspace_id,
                    domain_id,
                    url,
                    code,
                    title,
                    max_clicks,
                    expires_at,
                    password_hash,
                    redirect_type,
                    forward_query,
                    utm.get("utm_source"),
                    utm.get("utm_medium"),
                    utm.get("utm_campaign"),
                    utm.get("utm_term"),
                    utm.get("utm_content"),
                    description,
                    is_active,
                )
                assert row is not None
                link = StoredLink.from_row(row)
                await write_outbox(conn, topic, link.id, link_change("created", link))
                return link
        except asyncpg.UniqueViolationError:
            if short_code:
                raise ShortCodeTaken(
                    f"short_code {short_code!r} is already taken", field="short_code"
                ) from None
    raise ShortCodeTaken("could not generate a free short code; try again", field="short_code")


async def get_link(
    conn: asyncpg.Connection, workspace_id: str, link_id: str, *, deleted: bool = False, lock: bool = False
) -> StoredLink:
    """A live link of the workspace (or, with `deleted`, a soft-deleted one); LinkNotFound otherwise."""
    state = "IS NOT NULL" if deleted else "IS NULL"
    row = await fetch_one(
        conn,
        LinkNotFound("link not found"),
        f"SELECT {LINK_COLUMNS} FROM links WHERE id = $1 AND workspace_id = $2 AND deleted_at {state}"
        + (" FOR UPDATE" if lock else ""),
        link_id,
        workspace_id,
    )
    return StoredLink.from_row(row)


async def update_returning(
    conn: asyncpg.Connection, link_id: str, assignments: str, *args: object
) -> StoredLink:
    """`UPDATE links SET {assignments}, updated_at = now()` for one link (parameters from $2 on),
    returning the changed link."""
    row = await conn.fetchrow(
        f"UPDATE links SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {LINK_COLUMNS}",
        link_id,
        *args,
    )
    assert row is not None
    return StoredLink.from_row(row)


async def load_cached_link(
    conn: asyncpg.Connection, short_code: str, domain_id: str | None
) -> CachedLink | None:
    row = await conn.fetchrow(_GET_LINK_WITH_RULES, short_code, domain_id)
    if row is None:
        return None
    rules = row["rules"]
    if isinstance(rules, str | bytes):
        rules = orjson.loads(rules)
    utm = {
        k: row[k] for k in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content") if row[k]
    }
    return CachedLink(
        id=str(row["id"]),
        workspace_id=str(row["workspace_id"]),
        domain_id=str(row["domain_id"]) if row["domain_id"] else "",
        short_code=row["short_code"],
        url=row["url"],
        is_active=row["is_active"],
        expires_at=row["expires_at"].timestamp() if row["expires_at"] else None,
        max_clicks=row["max_clicks"],
        password_hash=row["password_hash"],
        redirect_type=row["redirect_type"],
        forward_query=row["forward_query"],
        utm=utm,
        rules=rules,
    )
