"""Database rows as JSON-ready dicts (UUIDs and timestamps as strings, bytes left out), and ids from
untrusted input checked before they reach a uuid column."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from engine.errors import ValidationFailed


def record_to_json(row: Mapping[str, Any], *, exclude: Collection[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in exclude or isinstance(value, bytes | bytearray | memoryview):
            continue
        if isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, UUID):
            out[key] = str(value)
        else:
            out[key] = value
    return out


def parse_uuid(value: object, field: str) -> str:
    """The canonical form of a UUID given as text; ValidationFailed naming `field` otherwise."""
    if (canonical := uuid_or_none(value)) is None:
        raise ValidationFailed(f"{field} must be a UUID", field=field)
    return canonical


def uuid_or_none(value: object) -> str | None:
    """The canonical form of a UUID given as text, or None for anything else."""
    try:
        return str(UUID(str(value)))
    except ValueError:
        return None
