"""write_audit stores `old`/`new` as audit_values makes them, exactly as the call sites that
wrapped their values themselves used to store them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson

from engine.audit import AuditContext, audit_values, write_audit

# The INSERT's positional parameters: old_values and new_values are $6 and $7.
_OLD, _NEW = 5, 6

REPRESENTATIVE: dict[str, object] = {
    "name": "Spring sale",
    "clicks": 3,
    "is_active": True,
    "expires_at": datetime(2026, 4, 1, 12, 30, 5, 123456, tzinfo=UTC),
    "visible_from": datetime(2026, 4, 1, 9, 0, tzinfo=timezone(timedelta(hours=2))),
    "naive": datetime(2026, 1, 2, 3, 4, 5),
    "theme_id": UUID("3f2b8c1e-8d4a-4c57-9b1e-2f6d7a0c9e11"),
    "logo_png": b"\x89PNG\r\n\x1a\n" + bytes(24),
    "events": ("link.created", "link.clicked"),
    "tags": ["a", "b"],
    "settings": {"nested": {"at": datetime(2026, 4, 1, tzinfo=UTC), "id": UUID(int=7)}, "n": None},
    "weight": None,
}


class _RecordingConnection:
    def __init__(self) -> None:
        self.args: tuple[Any, ...] = ()

    async def execute(self, sql: str, *args: Any) -> str:
        self.args = args
        return "INSERT 0 1"


async def _stored(**values: Any) -> tuple[bytes, bytes]:
    """old_values and new_values as the pool's jsonb codec (orjson) encodes them."""
    conn = _RecordingConnection()
    await write_audit(conn, AuditContext(actor_id=None), "ws", "thing.updated", "thing", "id", **values)  # type: ignore[arg-type]
    return orjson.dumps(conn.args[_OLD]), orjson.dumps(conn.args[_NEW])


def test_audit_values_is_idempotent() -> None:
    once = audit_values(REPRESENTATIVE)
    assert audit_values(once) == once
    assert audit_values(None) is None


async def test_write_audit_stores_what_wrapping_call_sites_stored() -> None:
    # Before: callers passed audit_values(v) and write_audit handed it to the codec unchanged.
    before = orjson.dumps(audit_values(REPRESENTATIVE))
    assert await _stored(old=REPRESENTATIVE, new=REPRESENTATIVE) == (before, before)
    # A value wrapped by its caller and again by write_audit is stored the same.
    wrapped = audit_values(REPRESENTATIVE)
    assert await _stored(old=wrapped, new=wrapped) == (before, before)


async def test_write_audit_leaves_already_plain_values_as_they_were() -> None:
    # Call sites that never wrapped pass JSON-ready values; those are stored unchanged.
    plain = {"role": "admin", "settings": {"a": [1, 2]}, "created_at": "2026-04-01T00:00:00+00:00", "w": None}
    assert await _stored(old=plain, new=plain) == (orjson.dumps(plain), orjson.dumps(plain))
    assert await _stored() == (b"null", b"null")
