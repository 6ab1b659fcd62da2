"""Validated input types shared by every adapter (api, web): datetimes that PostgreSQL and Python
can both hold, and free-form JSON with bounded depth and size. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator

# timestamptz reaches far beyond these, but Python's datetime stops at year 9999 and every value
# is moved to UTC on its way to the database: an offset near either end would overflow (a 500).
MIN_DATETIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_DATETIME = datetime(9999, 12, 30, tzinfo=UTC)

MAX_JSON_DEPTH = 8  # free-form objects (workspace settings, theme colours, rule conditions)
MAX_JSON_BYTES = 16 * 1024
MAX_BODY_DEPTH = 32  # any request body: well above every documented shape


def to_utc(value: datetime) -> datetime:
    """`value` in UTC (naive means UTC), or ValueError naming the accepted range."""
    try:
        out = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        out = None
    if out is None or not MIN_DATETIME <= out <= MAX_DATETIME:
        raise ValueError(f"must be between {MIN_DATETIME:%Y-%m-%d} and {MAX_DATETIME:%Y-%m-%d} (UTC)")
    return out


def parse_datetime(raw: str) -> datetime:
    """An ISO 8601 text (`Z` allowed) in UTC, or ValueError."""
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp") from None
    return to_utc(value)


# The one datetime type of every request model: pydantic parses, then this range-checks in UTC.
UtcDatetime = Annotated[datetime, AfterValidator(to_utc)]


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, `{}` and `[]` are 1); iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_json(value: Any, *, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """`value` unchanged when it nests at most `max_depth` levels and serialises to at most
    `max_bytes`; else ValueError saying which bound it broke."""
    if json_depth(value) > max_depth:
        raise ValueError(f"must nest at most {max_depth} levels deep")
    if len(orjson.dumps(value)) > max_bytes:
        raise ValueError(f"must be at most {max_bytes} bytes as JSON")
    return value


# Free-form JSON objects in request models (settings, colours, conditions).
BoundedJsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]
