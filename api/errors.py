"""One middleware turns every failure into the JSON error shape {"error": {code, message, field}}."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from engine.errors import LinkRiftError, RateLimited, ValidationFailed

log = logging.getLogger(__name__)


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    return json_response({"error": {"code": code, "message": message, "field": field}}, status)


def refuse_nul(request: web.Request) -> None:
    """PostgreSQL text cannot hold U+0000: a query or path parameter with one is bad input, not a 500."""
    # Most requests (every plain redirect) carry no query string: skip building request.query.
    for source in (request.query, request.match_info) if request.query_string else (request.match_info,):
        for name, value in source.items():
            if "\x00" in value:
                raise ValidationFailed(f"{name} must not contain NUL characters", field=name)


def error_answer(request: web.Request, exc: Exception) -> web.StreamResponse:
    """`error_middleware`'s answer to an exception; redirects (30x) and non-API HTTP errors are re-raised."""
    if isinstance(exc, LinkRiftError):
        headers = (
            {"Retry-After": str(max(1, int(exc.retry_after + 0.999)))}
            if isinstance(exc, RateLimited)
            else None
        )
        return json_response(exc.to_dict(), exc.status, headers)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise exc
        code = exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, code, exc.reason)
    # The request id is on the log line too (cli.logs adds it from engine.observability).
    log.error(
        "unhandled error method=%s path=%s host=%s status=500 error=%s",
        request.method, request.path[:200], (request.host or "")[:100], type(exc).__name__,
        exc_info=exc,
    )  # fmt: skip
    return error_response(500, "internal_error", "internal error")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        refuse_nul(request)
        return await handler(request)
    except Exception as exc:
        return error_answer(request, exc)
