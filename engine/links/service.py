"""Link use cases: validate, write the row, its tags, the outbox event and the audit row together.

Each mutation runs in one transaction holding the change, its `links.changes` outbox row and its
audit row. Creation checks the plan's monthly link quota in that transaction (402, field
`links_per_month`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from engine import outbox
from engine.audit import AuditContext, write_audit
from engine.auth.passwords import hash_password, validate_password
from engine.billing.usage import enforce_link_quota
from engine.db.sql import set_clause
from engine.errors import LinkRiftError, QuotaExceeded, ShortCodeTaken, ValidationFailed
from engine.links import repository
from engine.links.models import StoredLink
from engine.links.shortcodes import validate_custom_code
from engine.links.tags import set_link_tags, tags_for_links, validate_tag_names
from engine.links.urls import validate_destination

REDIRECT_TYPES = (301, 302, 307, 308)
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MAX_BULK = 100
MAX_TITLE = 500
MAX_DESCRIPTION = 2000
MAX_UTM = 255
# Columns a PATCH may set directly (after validation); password and tags are handled apart.
_PATCHABLE = frozenset(
    {
        "url",
        "short_code",
        "domain_id",
        "title",
        "description",
        "expires_at",
        "max_clicks",
        "redirect_type",
        "forward_query",
        "is_active",
        *UTM_FIELDS,
    }
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who changes links, and where the change events go."""

    workspace_id: str
    user_id: str
    audit: AuditContext
    topic: str
    blocked_hosts: Collection[str] = ()


@dataclass(frozen=True, slots=True)
class NewLink:
    url: str
    short_code: str | None = None
    domain_id: str | None = None
    title: str | None = None
    description: str | None = None
    max_clicks: int | None = None
    expires_at: datetime | None = None
    password: str | None = field(default=None, repr=False)
    redirect_type: int = 302
    forward_query: bool = False
    is_active: bool = True
    utm: Mapping[str, str] = field(default_factory=dict)
    tags: Sequence[str] = ()


def _text(value: object, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed(f"{name} must be a string", field=name)
    value = value.strip()
    if len(value) > limit:
        raise ValidationFailed(f"{name} must be at most {limit} characters", field=name)
    return value or None


def _expiry(value: datetime | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if value <= now:
        raise ValidationFailed("expires_at must be in the future", field="expires_at")
    return value


def _redirect_type(value: object) -> int:
    if value not in REDIRECT_TYPES:
        raise ValidationFailed("redirect_type must be one of 301, 302, 307, 308", field="redirect_type")
    assert isinstance(value, int)
    return value


def _max_clicks(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 2_000_000_000:
        raise ValidationFailed("max_clicks must be an integer from 1 to 2000000000", field="max_clicks")
    return value


def validate_new_link(
    link: NewLink, *, blocked_hosts: Collection[str] = (), now: datetime | None = None
) -> NewLink:
    """The normalized link, or ValidationFailed naming the first bad field (pure)."""
    now = now or datetime.now(UTC)
    if link.password is not None:
        validate_password(link.password)
    return replace(
        link,
        url=validate_destination(link.url, blocklist=blocked_hosts),
        short_code=validate_custom_code(link.short_code) if link.short_code else None,
        title=_text(link.title, "title", MAX_TITLE),
        description=_text(link.description, "description", MAX_DESCRIPTION),
        max_clicks=_max_clicks(link.max_clicks),
        expires_at=_expiry(link.expires_at, now),
        redirect_type=_redirect_type(link.redirect_type),
        utm={k: v for k in UTM_FIELDS if (v := _text(link.utm.get(k), k, MAX_UTM))},
        tags=validate_tag_names(link.tags),
    )


async def _check_domain(conn: asyncpg.Connection, workspace_id: str, domain_id: str | None) -> None:
    if domain_id is None:
        return
    found = await conn.fetchval(
        "SELECT 1 FROM domains WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
        domain_id,
        workspace_id,
    )
    if not found:
        raise ValidationFailed("domain_id is not a domain of this workspace", field="domain_id")


async def _hash(password: str | None) -> str | None:
    # argon2id takes tens of milliseconds of CPU: keep it off the event loop.
    return await asyncio.to_thread(hash_password, password) if password is not None else None


_AUDITED = (
    "url",
    "short_code",
    "domain_id",
    "title",
    "is_active",
    "expires_at",
    "max_clicks",
    "redirect_type",
    "forward_query",
    "has_password",
    *UTM_FIELDS,
)


def audit_view(link: StoredLink) -> dict[str, Any]:
    """A link as the audit log stores it (no hashes; JSON-safe values)."""
    out: dict[str, Any] = {}
    for key in _AUDITED:
        value = getattr(link, key)
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


async def create_link(conn: asyncpg.Connection, actor: Actor, link: NewLink) -> StoredLink:
    """Insert a validated link with its tags, outbox event and audit row (one transaction)."""
    password_hash = await _hash(link.password)
    async with conn.transaction():
        await _check_domain(conn, actor.workspace_id, link.domain_id)
        await enforce_link_quota(conn, actor.workspace_id)
        row = await repository.create_link(
            conn,
            topic=actor.topic,
            user_id=actor.user_id,
            workspace_id=actor.workspace_id,
            url=link.url,
            short_code=link.short_code,
            domain_id=link.domain_id,
            title=link.title,
            description=link.description,
            is_active=link.is_active,
            max_clicks=link.max_clicks,
            expires_at=link.expires_at,
            password_hash=password_hash,
            redirect_type=link.redirect_type,
            forward_query=link.forward_query,
            utm=dict(link.utm),
        )
        if link.tags:
            await set_link_tags(conn, actor.workspace_id, row.id, link.tags)
        await write_audit(
            conn, actor.audit, actor.workspace_id, "link.created", "link", row.id, new=audit_view(row)
        )
    return row


@dataclass(frozen=True, slots=True)
class BulkResult:
    index: int
    row: StoredLink | None = None
    error: LinkRiftError | None = None


async def create_links_bulk(
    conn: asyncpg.Connection, actor: Actor, items: Sequence[NewLink | LinkRiftError]
) -> list[BulkResult]:
    """Per-item semantics: each valid item commits on its own; failures (including the plan's
    quota running out midway) are reported, not fatal."""
    if len(items) > MAX_BULK:
        raise ValidationFailed(f"at most {MAX_BULK} links per call", field="links")
    results: list[BulkResult] = []
    for index, item in enumerate(items):
        if isinstance(item, LinkRiftError):
            results.append(BulkResult(index, error=item))
            continue
        try:
            results.append(BulkResult(index, row=await create_link(conn, actor, item)))
        except (ValidationFailed, ShortCodeTaken, QuotaExceeded) as exc:
            results.append(BulkResult(index, error=exc))
    return results


async def update_link(
    conn: asyncpg.Connection, actor: Actor, link_id: str, changes: Mapping[str, Any]
) -> StoredLink:
    """Apply a PATCH: only the keys present change; `None` clears a nullable field (a null
    password removes the password). Writes `updated` with the old code if the code moved."""
    sets: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("password", "tags"):
            continue
        if key not in _PATCHABLE:
            raise ValidationFailed(f"{key} cannot be changed", field=key)
        sets[key] = _validate_patch_value(key, value, actor.blocked_hosts)
    password_changed = "password" in changes
    if password_changed and changes["password"] is not None:
        validate_password(changes["password"])
    tags = validate_tag_names(changes["tags"]) if changes.get("tags") is not None else None
    if "tags" in changes and changes["tags"] is None:
        tags = []
    new_hash = await _hash(changes.get("password")) if password_changed else None
    if password_changed:
        sets["password_hash"] = new_hash
    async with conn.transaction():
        old = await repository.get_link(conn, actor.workspace_id, link_id, lock=True)
        if "domain_id" in sets:
            await _check_domain(conn, actor.workspace_id, sets["domain_id"])
        if "max_clicks" in sets and _cap_raised(old.max_clicks, sets["max_clicks"]):
            # Room for more clicks: the link is no longer exhausted, and the worker announces
            # `exhausted` again when the new cap is reached (see _cap_raised for the counter).
            sets["exhausted_at"] = None
        if "url" in sets and sets["url"] != old.url:
            # The old destination's images are wrong now; the api refetches them.
            sets.update(favicon_url=None, og_image_url=None)
        row = old
        if sets:
            assignments = set_clause(sets, start=2)
            try:
                async with conn.transaction():
                    row = await repository.update_returning(conn, link_id, assignments, *sets.values())
            except asyncpg.UniqueViolationError:
                raise ShortCodeTaken(
                    f"short_code {sets.get('short_code', old.short_code)!r} is already taken",
                    field="short_code",
                ) from None
        if tags is not None:
            await set_link_tags(conn, actor.workspace_id, link_id, tags)
        await outbox.write_outbox(conn, actor.topic, link_id, outbox.link_change("updated", row, old))
        new_view = audit_view(row)
        if tags is not None:
            new_view["tags"] = tags
        await write_audit(
            conn,
            actor.audit,
            actor.workspace_id,
            "link.updated",
            "link",
            link_id,
            old=audit_view(old),
            new=new_view,
        )
    return row


def _cap_raised(old: int | None, new: int | None) -> bool:
    """Whether a max_clicks change leaves room for more clicks (raised, removed or newly set).

    The redirect's admission counter (Redis `link:admitted:{id}`) counts the clicks admitted so
    far and is left alone: raising max_clicks from 100 to 150 admits exactly 50 more."""
    return new is None or old is None or new > old


def _validate_patch_value(key: str, value: Any, blocked_hosts: Collection[str]) -> Any:
    if key == "url":
        return validate_destination(value, blocklist=blocked_hosts)
    if key == "short_code":
        if value is None:
            raise ValidationFailed("short_code cannot be null", field="short_code")
        return validate_custom_code(value)
    if key == "title":
        return _text(value, key, MAX_TITLE)
    if key == "description":
        return _text(value, key, MAX_DESCRIPTION)
    if key in UTM_FIELDS:
        return _text(value, key, MAX_UTM)
    if key == "expires_at":
        return _expiry(value, datetime.now(UTC))
    if key == "max_clicks":
        return _max_clicks(value)
    if key == "redirect_type":
        return _redirect_type(value)
    if key in ("forward_query", "is_active"):
        if not isinstance(value, bool):
            raise ValidationFailed(f"{key} must be true or false", field=key)
        return value
    return value  # domain_id: a UUID checked by the api model, ownership checked in the transaction


async def delete_link(conn: asyncpg.Connection, actor: Actor, link_id: str) -> StoredLink:
    """Soft delete: the code stops resolving at once (outbox `deleted`) and becomes free."""
    async with conn.transaction():
        old = await repository.get_link(conn, actor.workspace_id, link_id, lock=True)
        row = await repository.update_returning(conn, link_id, "deleted_at = now()")
        await outbox.write_outbox(conn, actor.topic, link_id, outbox.link_change("deleted", row))
        await write_audit(
            conn, actor.audit, actor.workspace_id, "link.deleted", "link", link_id, old=audit_view(old)
        )
    return row


async def restore_link(conn: asyncpg.Connection, actor: Actor, link_id: str) -> StoredLink:
    """Undo a soft delete; ShortCodeTaken if another live link took the code meanwhile."""
    async with conn.transaction():
        await repository.get_link(conn, actor.workspace_id, link_id, deleted=True, lock=True)
        try:
            async with conn.transaction():
                row = await repository.update_returning(conn, link_id, "deleted_at = NULL")
        except asyncpg.UniqueViolationError:
            raise ShortCodeTaken(
                "another link uses this short code now; change that link's code first", field="short_code"
            ) from None
        await outbox.write_outbox(conn, actor.topic, link_id, outbox.link_change("restored", row))
        await write_audit(
            conn, actor.audit, actor.workspace_id, "link.restored", "link", link_id, new=audit_view(row)
        )
    return row


async def links_json(
    conn: asyncpg.Connection, links: Sequence[StoredLink], base_url: str
) -> list[dict[str, Any]]:
    """API representation of links, each with its tags."""
    tags = await tags_for_links(conn, [link.id for link in links])
    return [{**link.to_json(base_url), "tags": tags.get(link.id, [])} for link in links]
