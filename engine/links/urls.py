"""Destination URL validation (only absolute http(s) URLs without control characters, to hosts
that are not blocklisted) and the `Location` header text of a destination. Pure functions, used
by every front that redirects."""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import quote, urlsplit

from engine.errors import ValidationFailed

MAX_URL_LENGTH = 4096
# C0 controls, space, DEL, C1 controls and any other Unicode whitespace (U+2028, U+00A0, ...):
# none belongs in a URL, and several cannot be sent in a header at all.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\s]")
# What may stand verbatim in a Location header: printable ASCII except space.
_NOT_HEADER_SAFE = re.compile(r"[^\x21-\x7e]")


def validate_destination(url: object, *, field: str = "url", blocklist: Collection[str] = ()) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ValidationFailed(f"{field} is required", field=field)
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise ValidationFailed(f"{field} is longer than {MAX_URL_LENGTH} characters", field=field)
    if _FORBIDDEN.search(url):
        raise ValidationFailed(f"{field} must not contain whitespace or control characters", field=field)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a non-numeric port
    except ValueError:
        raise ValidationFailed(f"{field} is not a valid URL", field=field) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationFailed(f"{field} must be an http:// or https:// URL", field=field)
    if not host:
        raise ValidationFailed(f"{field} must include a host", field=field)
    host = host.lower().rstrip(".")
    for blocked in blocklist:
        blocked = blocked.lower()
        if host == blocked or host.endswith("." + blocked):
            raise ValidationFailed(f"{field} points to a blocked host", field=field)
    return url


def location_header(url: str) -> str:
    """`url` as a `Location` value every HTTP stack can send: characters outside printable ASCII
    (non-ASCII, controls or spaces stored before they were refused) are percent-encoded as UTF-8;
    everything else, including existing %XX escapes, is kept as it is."""
    if url.isascii() and url.isprintable() and " " not in url:
        return url  # the common case, without a regex pass
    return _NOT_HEADER_SAFE.sub(lambda m: quote(m.group(), safe=""), url)
