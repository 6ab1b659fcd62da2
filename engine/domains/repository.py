"""Custom domains in PostgreSQL, always scoped by workspace; soft-deleted rows free their name.

Persistence only, as Domain values. The use cases (plan quota, what may change, DNS checks and
the `domain.verified` event) are in engine/domains/service.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from engine.db.sql import fetch_one, set_clause
from engine.domains.models import Domain
from engine.errors import Conflict, NotFound

DOMAIN_COLUMNS = (
    "id, workspace_id, domain, is_verified, verified_at, ssl_status, ssl_expires_at, dns_records, "
    "last_dns_check_at, default_redirect_url, custom_404_url, created_at, updated_at"
)


def _missing() -> NotFound:
    return NotFound("domain not found", field="domain_id")


async def count_live(conn: asyncpg.Connection, workspace_id: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM domains WHERE workspace_id = $1 AND deleted_at IS NULL", workspace_id
    )
    return count


async def insert_domain(
    conn: asyncpg.Connection,
    *,
    workspace_id: str,
    domain: str,
    dns_records: list[dict[str, Any]],
    default_redirect_url: str | None,
    custom_404_url: str | None,
) -> Domain:
    """Insert an unverified domain; Conflict (field domain) when the name is registered."""
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                f"""INSERT INTO domains (workspace_id, domain, dns_records, default_redirect_url,
                        custom_404_url)
                    VALUES ($1, $2, $3, $4, $5) RETURNING {DOMAIN_COLUMNS}""",
                workspace_id,
                domain,
                dns_records,
                default_redirect_url,
                custom_404_url,
            )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"domain {domain!r} is already registered", field="domain") from None
    assert row is not None
    return Domain.from_row(row)


async def list_domains(conn: asyncpg.Connection, workspace_id: str) -> list[Domain]:
    rows = await conn.fetch(
        f"SELECT {DOMAIN_COLUMNS} FROM domains WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY domain",
        workspace_id,
    )
    return [Domain.from_row(r) for r in rows]


async def get_domain(conn: asyncpg.Connection, workspace_id: str, domain_id: str) -> Domain:
    """A live domain of the workspace; NotFound (field domain_id) otherwise."""
    row = await fetch_one(
        conn,
        _missing(),
        f"SELECT {DOMAIN_COLUMNS} FROM domains WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
        domain_id,
        workspace_id,
    )
    return Domain.from_row(row)


async def update_domain(
    conn: asyncpg.Connection, workspace_id: str, domain_id: str, changes: dict[str, Any]
) -> Domain:
    """Set the given (validated, non-empty) columns of a live domain of the workspace."""
    row = await fetch_one(
        conn,
        _missing(),
        f"""UPDATE domains SET {set_clause(changes, 3)}, updated_at = NOW()
            WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL RETURNING {DOMAIN_COLUMNS}""",
        domain_id,
        workspace_id,
        *changes.values(),
    )
    return Domain.from_row(row)


async def delete_domain(conn: asyncpg.Connection, workspace_id: str, domain_id: str) -> str:
    """Soft-delete; the row is renamed `~{id}` so the hostname can be registered again. Returns it."""
    host = await conn.fetchval(
        """UPDATE domains d SET deleted_at = NOW(), updated_at = NOW(), is_verified = FALSE,
                  domain = '~' || d.id::text
           FROM (SELECT id, domain FROM domains WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL
                 FOR UPDATE) old
           WHERE d.id = old.id RETURNING old.domain""",
        domain_id,
        workspace_id,
    )
    if host is None:
        raise _missing()
    return str(host)


async def lock_for_check(conn: asyncpg.Connection, domain_id: str) -> tuple[list[Any] | None, bool]:
    """(dns_records, is_verified) of a domain, locked until the caller's transaction ends."""
    row = await conn.fetchrow(
        "SELECT dns_records, is_verified FROM domains WHERE id = $1 FOR UPDATE", domain_id
    )
    assert row is not None
    return row["dns_records"], row["is_verified"]


async def store_check(
    conn: asyncpg.Connection, domain_id: str, dns_records: list[Any], at: datetime, verified: bool
) -> Domain:
    """Store a check's records and time; `verified` verifies it (a verified domain stays so)."""
    row = await conn.fetchrow(
        f"""UPDATE domains SET dns_records = $2, last_dns_check_at = $3, updated_at = $3,
                  is_verified = is_verified OR $4,
                  verified_at = CASE WHEN $4 AND NOT is_verified THEN $3 ELSE verified_at END
            WHERE id = $1 RETURNING {DOMAIN_COLUMNS}""",
        domain_id,
        dns_records,
        at,
        verified,
    )
    assert row is not None
    return Domain.from_row(row)


async def due_for_check(conn: asyncpg.Connection, checked_before: datetime, limit: int) -> list[Domain]:
    """Live domains not checked since `checked_before`, never-checked and oldest first."""
    rows = await conn.fetch(
        f"""SELECT {DOMAIN_COLUMNS} FROM domains
            WHERE deleted_at IS NULL AND (last_dns_check_at IS NULL OR last_dns_check_at < $1)
            ORDER BY last_dns_check_at NULLS FIRST LIMIT $2""",
        checked_before,
        limit,
    )
    return [Domain.from_row(r) for r in rows]


async def workspace_for_host(conn: asyncpg.Connection, host: str) -> str | None:
    """The workspace a verified custom domain belongs to, or None."""
    value = await conn.fetchval(
        "SELECT workspace_id FROM domains WHERE domain = $1 AND deleted_at IS NULL AND is_verified", host
    )
    return str(value) if value else None
