"""Link state as the redirect front end needs it, cached in-process and in Redis."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
