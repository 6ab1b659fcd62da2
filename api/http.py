"""Request and response helpers every handler module shares: the JSON body as a dict
(`read_json`), validated into a pydantic model (`parse_model`), UUIDs from the path or a body
(`parse_uuid`, `path_uuid`), and the one list envelope (`list_response`). Each request failure is
a ValidationFailed naming the field (a 422, never a 500)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.errors import json_response
from engine.errors import ValidationFailed
from engine.inputs import MAX_BODY_DEPTH, json_depth
from engine.records import parse_uuid

__all__ = ["list_response", "parse_model", "parse_uuid", "path_uuid", "read_json"]

M = TypeVar("M", bound=BaseModel)


def path_uuid(request: web.Request, name: str) -> str:
    """The `{name}` part of the route as a canonical UUID; ValidationFailed(field=name) otherwise."""
    return parse_uuid(request.match_info[name], name)


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationFailed("request body must be valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise ValidationFailed("request body must be a JSON object", field="body")
    for key, value in body.items():
        # Deep nesting would overflow recursive code further on (JSON encoders, validators): a 500.
        if json_depth(value) >= MAX_BODY_DEPTH:
            raise ValidationFailed(f"{key} must nest at most {MAX_BODY_DEPTH - 1} levels deep", field=key)
    if b"\\u0000" in raw and (field := _nul_field(body, "")) is not None:
        # PostgreSQL text cannot hold U+0000; refused here rather than as a 500 from the database.
        raise ValidationFailed(f"{field or 'body'} must not contain NUL characters", field=field or "body")
    return body


def _nul_field(value: Any, path: str) -> str | None:
    """The path (`a.b[0]`) of the first key or string holding U+0000, else None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return inner
            if (found := _nul_field(item, inner)) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _nul_field(item, f"{path}[{i}]")) is not None:
                return found
    return None


def parse_model(model: type[M], data: dict[str, Any], prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = prefix + (".".join(str(p) for p in err["loc"]) or "body")
        raise ValidationFailed(f"{field}: {err['msg']}", field=field) from None


def list_response(data: Sequence[object], next_cursor: str | None = None, **extra: object) -> web.Response:
    """Every list the API returns: `{"data": [...], "next_cursor": str | null}` (null: no more
    pages or not paginated), plus endpoint-specific extras such as `total_count`."""
    return json_response({"data": list(data), "next_cursor": next_cursor, **extra})
