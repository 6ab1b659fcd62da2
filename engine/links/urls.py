"""Destination URL validation: only absolute http(s) URLs to hosts that are not blocklisted."""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from engine.errors import ValidationFailed

MAX_URL_LENGTH = 4096


def validate_destination(url: object, *, field: str = "url", blocklist: Collection[str] = ()) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ValidationFailed(f"{field} is required", field=field)
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise ValidationFailed(f"{field} is longer than {MAX_URL_LENGTH} characters", field=field)
    if any(c in url for c in "\r\n\t\x00 "):
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
