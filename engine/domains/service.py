"""Use cases on custom domains: add within the plan's quota, change what may change, check the
DNS TXT record (a domain that becomes verified queues its `domain.verified` webhook deliveries
in the same transaction), and the periodic re-check. Storage: engine/domains/repository.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from engine.billing.plans import check_quota
from engine.billing.usage import lock_quota
from engine.domains import repository
from engine.domains.models import Domain
from engine.domains.verification import CheckOutcome, DnsCheck, TxtVerifier, verification_record
from engine.errors import ValidationFailed
from engine.webhooks.emit import emit_event

SSL_STATUSES = ("pending", "active", "failed")
# Columns the update endpoint may set (URLs are validated by the caller).
UPDATABLE = ("default_redirect_url", "custom_404_url", "ssl_status", "ssl_expires_at")


async def create_domain(
    conn: asyncpg.Connection,
    *,
    workspace_id: str,
    domain: str,
    token: str,
    default_redirect_url: str | None = None,
    custom_404_url: str | None = None,
) -> Domain:
    """Add a domain (unverified); QuotaExceeded (402, field custom_domains) past the plan."""
    async with conn.transaction():
        plan = await lock_quota(conn, workspace_id, "custom_domains")
        check_quota(plan, "custom_domains", await repository.count_live(conn, workspace_id))
        return await repository.insert_domain(
            conn,
            workspace_id=workspace_id,
            domain=domain,
            dns_records=[verification_record(domain, token)],
            default_redirect_url=default_redirect_url,
            custom_404_url=custom_404_url,
        )


async def update_domain(
    conn: asyncpg.Connection, workspace_id: str, domain_id: str, changes: dict[str, Any]
) -> Domain:
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValidationFailed(f"{sorted(unknown)[0]} cannot be changed", field=sorted(unknown)[0])
    if "ssl_status" in changes and changes["ssl_status"] not in SSL_STATUSES:
        raise ValidationFailed(f"ssl_status must be one of {', '.join(SSL_STATUSES)}", field="ssl_status")
    if not changes:
        return await repository.get_domain(conn, workspace_id, domain_id)
    return await repository.update_domain(conn, workspace_id, domain_id, changes)


async def record_check(conn: asyncpg.Connection, domain_id: str, check: DnsCheck) -> Domain:
    """Store a DNS check. A verified domain stays verified if a later re-check fails (its links
    keep working); the failure is visible in dns_records[].last_check. The check that verifies
    a domain also queues its `domain.verified` webhook deliveries (same transaction)."""
    async with conn.transaction():
        records, was_verified = await repository.lock_for_check(conn, domain_id)
        now = datetime.now(UTC)
        domain = await repository.store_check(
            conn,
            domain_id,
            _with_last_check(records, check, now),
            now,
            check.outcome is CheckOutcome.VERIFIED,
        )
        if domain.is_verified and not was_verified:
            assert domain.verified_at is not None
            await emit_event(
                conn,
                domain.workspace_id,
                "domain.verified",
                subject_id=domain.id,
                at=domain.verified_at,
                data={
                    "domain_id": domain.id,
                    "workspace_id": domain.workspace_id,
                    "domain": domain.domain,
                    "verified_at": domain.verified_at.isoformat(),
                },
            )
    return domain


def _with_last_check(records: list[Any] | None, check: DnsCheck, now: datetime) -> list[Any]:
    """The domain's DNS records with the check's result on its verification record."""
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
    return updated


async def verify_domain(
    conn: asyncpg.Connection, verifier: TxtVerifier, domain: Domain
) -> tuple[Domain, DnsCheck]:
    token = domain.token
    if token is None:
        check = DnsCheck(CheckOutcome.ERROR, "domain has no verification token")
    else:
        check = await verifier.check(domain.domain, token)
    return await record_check(conn, domain.id, check), check


async def recheck_domains(
    pool: asyncpg.Pool, verifier: TxtVerifier, *, interval: timedelta, limit: int = 100
) -> list[tuple[str, DnsCheck]]:
    """The periodic re-check (worker timer or cron): every live domain not checked for `interval`,
    oldest first. Returns (domain, outcome) for each domain it checked."""
    async with pool.acquire() as conn:
        due = await repository.due_for_check(conn, datetime.now(UTC) - interval, limit)
    results = []
    for domain in due:
        async with pool.acquire() as conn:
            _, check = await verify_domain(conn, verifier, domain)
        results.append((domain.domain, check))
    return results
