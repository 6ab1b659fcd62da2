"""Links as the engine hands them out: `StoredLink` (a `links` row, returned by engine/links'
repository, service and search) and `CachedLink` (what the redirect front end needs, cached
in-process and in Redis)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import asyncpg
import orjson


@dataclass(slots=True)
class CachedLink:
    """Everything needed to answer a redirect without touching PostgreSQL."""

    id: str
    workspace_id: str
    domain_id: str
    short_code: str
    url: str
    is_active: bool
    expires_at: float | None  # unix seconds
    max_clicks: int | None
    password_hash: str | None
    redirect_type: int = 302
    forward_query: bool = False
    utm: dict[str, str] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, data: bytes | str) -> CachedLink:
        return cls(**orjson.loads(data))


@dataclass(frozen=True, slots=True)
class StoredLink:
    """One `links` row as engine/links hands it out (the columns of repository.LINK_COLUMNS, in
    that order: `to_json` keeps it). Ids are strings; a link's `total_clicks` is what LinkRift
    tracked (`tracked_clicks`) plus what an import brought (`imported_clicks`)."""

    id: str
    user_id: str
    workspace_id: str
    domain_id: str | None
    url: str
    short_code: str
    title: str | None
    description: str | None
    favicon_url: str | None
    og_image_url: str | None
    is_active: bool
    expires_at: datetime | None
    max_clicks: int | None
    total_clicks: int
    tracked_clicks: int
    imported_clicks: int
    unique_clicks: int
    redirect_type: int
    forward_query: bool
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    imported_at: datetime | None
    has_password: bool

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StoredLink:
        """A row selected with repository.LINK_COLUMNS (extra columns such as a window count are ignored)."""
        values = {name: row[name] for name in _STORED_LINK_FIELDS}
        for name in ("id", "user_id", "workspace_id", "domain_id"):
            if values[name] is not None:
                values[name] = str(values[name])
        return cls(**values)

    def to_json(self, base_url: str) -> dict[str, Any]:
        """The API's view: every column (timestamps in ISO 8601) and the short URL."""
        out: dict[str, Any] = {}
        for name in _STORED_LINK_FIELDS:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["short_url"] = f"{base_url.rstrip('/')}/{self.short_code}"
        return out

    @property
    def tracked_since(self) -> datetime:
        """Where the link's click history starts: an imported link's `created_at` is the source's
        date, but LinkRift has its clicks only from the import on (a default analytics window must
        not reach back years to a date it has no clicks for)."""
        return self.imported_at or self.created_at

    @property
    def utm(self) -> dict[str, str | None]:
        """The UTM values the link adds to its destination, by name (None when unset)."""
        return {
            "utm_source": self.utm_source,
            "utm_medium": self.utm_medium,
            "utm_campaign": self.utm_campaign,
            "utm_term": self.utm_term,
            "utm_content": self.utm_content,
        }


_STORED_LINK_FIELDS = tuple(f.name for f in fields(StoredLink))
