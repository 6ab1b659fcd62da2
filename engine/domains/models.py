"""A custom domain as the engine hands it out (engine/domains/repository.py returns these)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from engine.domains.verification import (
    RoutingTarget,
    record_name,
    record_value,
    routing_records,
    token_from_records,
)


@dataclass(frozen=True, slots=True)
class Domain:
    """One `domains` row."""

    id: str
    workspace_id: str
    domain: str
    is_verified: bool
    verified_at: datetime | None
    ssl_status: str
    ssl_expires_at: datetime | None
    dns_records: list[Any] | None
    last_dns_check_at: datetime | None
    default_redirect_url: str | None
    custom_404_url: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Domain:
        return cls(
            id=str(row["id"]),
            workspace_id=str(row["workspace_id"]),
            domain=row["domain"],
            is_verified=row["is_verified"],
            verified_at=row["verified_at"],
            ssl_status=row["ssl_status"],
            ssl_expires_at=row["ssl_expires_at"],
            dns_records=row["dns_records"],
            last_dns_check_at=row["last_dns_check_at"],
            default_redirect_url=row["default_redirect_url"],
            custom_404_url=row["custom_404_url"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    @property
    def token(self) -> str | None:
        """The verification token of its TXT record, if it has one."""
        return token_from_records(self.dns_records)

    def to_json(self, target: RoutingTarget) -> dict[str, Any]:
        """The API's view: every column (timestamps in ISO 8601) and what to publish in DNS: the
        TXT record proving ownership and the records that send its traffic to `target`."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        token = self.token
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "domain": self.domain,
            "is_verified": self.is_verified,
            "verified_at": iso(self.verified_at),
            "ssl_status": self.ssl_status,
            "ssl_expires_at": iso(self.ssl_expires_at),
            "dns_records": self.dns_records,
            "last_dns_check_at": iso(self.last_dns_check_at),
            "default_redirect_url": self.default_redirect_url,
            "custom_404_url": self.custom_404_url,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "verification": {
                "type": "TXT",
                "name": record_name(self.domain),
                "value": record_value(token) if token else None,
            },
            "routing": routing_records(self.domain, target),
        }
