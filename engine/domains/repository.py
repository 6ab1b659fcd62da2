"""Custom domains in PostgreSQL, always scoped by workspace; soft-deleted rows free their name.

Adding one checks the plan's `custom_domains` quota; a domain that becomes verified queues its
`domain.verified` webhook deliveries in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from engine.billing.plans import check_quota
from engine.billing.usage import lock_quota
from engine.db.sql import set_clause
from engine.domains.verification import (
    CheckOutcome,
    DnsCheck,
    TxtVerifier,
    record_name,
    record_value,
    token_from_records,
    verification_record,
)
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.records import record_to_json
from engine.webhooks.emit import emit_event

SSL_STATUSES = ("pending", "active", "failed")

DOMAIN_COLUMNS = (
    "id, workspace_id, domain, is_verified, verified_at, ssl_status, ssl_expires_at, dns_records, "
    "last_dns_check_at, default_redirect_url, custom_404_url, created_at, updated_at"
)
# Columns the update endpoint may set (values are validated by the caller).
UPDATABLE = ("default_redirect_url", "custom_404_url", "ssl_status", "ssl_expires_at")


async def create_domain(
    conn: asyncpg.Connection,
    *,
    workspace_id: str,
    domain: str,
    token: str,
    default_redirect_url: str | None = None,
    custom_404_url: str | None = None,
) -> asyncpg.Record:
    """Insert a domain (unverified); QuotaExceeded (402, field custom_domains) past the plan."""
    async with conn.transaction():
        plan = await lock_quota(conn, workspace_id, "custom_domains")
        existing = await conn.fetchval(
            "SELECT count(*) FROM domains WHERE workspace_id = $1 AND deleted_at IS NULL", workspace_id
        )
        check_quota(plan, "custom_domains", int(existing))
        try:
            async with conn.transaction():
                row = await conn.fetchrow(
                    f"""INSERT INTO domains (workspace_id, domain, dns_records, default_redirect_url,
                            custom_404_url)
                        VALUES ($1, $2, $3, $4, $5) RETURNING {DOMAIN_COLUMNS}""",
                    workspace_id,
                    domain,
                    [verification_record(domain, token)],
                    default_redirect_url,
                    custom_404_url,
                )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"domain {domain!r} is already registered", field="domain") from None
    assert row is not None
    return row


async def list_domains(conn: asyncpg.Connection, workspace_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {DOMAIN_COLUMNS} FROM domains WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY domain",
            workspace_id,
        )
    )


async def get_domain(conn: asyncpg.Connection, workspace_id: str, domain_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"SELECT {DOMAIN_COLUMNS} FROM domains WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
        domain_id,
        workspace_id,
    )
    if row is None:
        raise NotFound("domain not found", field="domain_id")
    return row


async def update_domain(
    conn: asyncpg.Connection, workspace_id: str, domain_id: str, changes: dict[str, Any]
) -> asyncpg.Record:
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValidationFailed(f"{sorted(unknown)[0]} cannot be changed", field=sorted(unknown)[0])
    if "ssl_status" in changes and changes["ssl_status"] not in SSL_STATUSES:
        raise ValidationFailed(f"ssl_status must be one of {', '.join(SSL_STATUSES)}", field="ssl_status")
    if not changes:
        return await get_domain(conn, workspace_id, domain_id)
    row = await conn.fetchrow(
        f"""UPDATE domains SET {set_clause(changes, 3)}, updated_at = NOW()
            WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL RETURNING {DOMAIN_COLUMNS}""",
        domain_id,
        workspace_id,
        *changes.values(),
    )
    if row is None:
        raise NotFound("domain not found", field="domain_id")
    return row


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
        raise NotFound("domain not found", field="domain_id")
    return str(host)


async def record_check(conn: asyncpg.Connection, domain_id: str, check: DnsCheck) -> asyncpg.Record:
    """Store a DNS check. A verified domain stays verified if a later re-check fails (its links
    keep working); the failure is visible in dns_records[].last_check. The check that verifies
    a domain also queues its `domain.verified` webhook deliveries (same transaction)."""
    async with conn.transaction():
        before = await conn.fetchrow(
            "SELECT dns_records, is_verified FROM domains WHERE id = $1 FOR UPDATE", domain_id
        )
        assert before is not None
        row = await _store_check(conn, domain_id, before["dns_records"], check)
        if row["is_verified"] and not before["is_verified"]:
            await emit_event(
                conn,
                str(row["workspace_id"]),
                "domain.verified",
                subject_id=str(row["id"]),
                at=row["verified_at"],
                data={
                    "domain_id": str(row["id"]),
                    "workspace_id": str(row["workspace_id"]),
                    "domain": row["domain"],
                    "verified_at": row["verified_at"].isoformat(),
                },
            )
    return row


async def _store_check(
    conn: asyncpg.Connection, domain_id: str, records: list[Any] | None, check: DnsCheck
) -> asyncpg.Record:
    now = datetime.now(UTC)
    updated = []
    for record in records or []:
        if isinstance(record, dict) and record.get("purpose") == "verification":
            record = {
                **record,
                "last_check": {
                    "outcome": str(check.outcome),
                    "detail": check.detail,
                    "found": list(check.found),
                    "at": now.isoformat(),
                },
            }
        updated.append(record)
    row = await conn.fetchrow(
        f"""UPDATE domains SET dns_records = $2, last_dns_check_at = $3, updated_at = $3,
                  is_verified = is_verified OR $4,
                  verified_at = CASE WHEN $4 AND NOT is_verified THEN $3 ELSE verified_at END
            WHERE id = $1 RETURNING {DOMAIN_COLUMNS}""",
        domain_id,
        updated,
        now,
        check.outcome is CheckOutcome.VERIFIED,
    )
    assert row is not None
    return row


async def verify_domain(
    conn: asyncpg.Connection, verifier: TxtVerifier, row: asyncpg.Record
) -> tuple[asyncpg.Record, DnsCheck]:
    token = token_from_records(row["dns_records"])
    if token is None:
        check = DnsCheck(CheckOutcome.ERROR, "domain has no verification token")
    else:
        check = await verifier.check(row["domain"], token)
    return await record_check(conn, str(row["id"]), check), check


async def recheck_domains(
    pool: asyncpg.Pool, verifier: TxtVerifier, *, interval: timedelta, limit: int = 100
) -> list[tuple[str, DnsCheck]]:
    """The periodic re-check (worker timer or cron): every live domain not checked for `interval`,
    oldest first. Returns (domain, outcome) for each domain it checked."""
    async with pool.acquire() as conn:
        due = await conn.fetch(
            f"""SELECT {DOMAIN_COLUMNS} FROM domains
                WHERE deleted_at IS NULL AND (last_dns_check_at IS NULL OR last_dns_check_at < $1)
                ORDER BY last_dns_check_at NULLS FIRST LIMIT $2""",
            datetime.now(UTC) - interval,
            limit,
        )
    results = []
    for row in due:
        async with pool.acquire() as conn:
            _, check = await verify_domain(conn, verifier, row)
        results.append((str(row["domain"]), check))
    return results


async def workspace_for_host(conn: asyncpg.Connection, host: str) -> str | None:
    """The workspace a verified custom domain belongs to, or None."""
    value = await conn.fetchval(
        "SELECT workspace_id FROM domains WHERE domain = $1 AND deleted_at IS NULL AND is_verified", host
    )
    return str(value) if value else None


def domain_to_json(row: asyncpg.Record) -> dict[str, Any]:
    out = record_to_json(row)
    token = token_from_records(row["dns_records"])
    out["verification"] = {
        "type": "TXT",
        "name": record_name(row["domain"]),
        "value": record_value(token) if token else None,
    }
    return out
