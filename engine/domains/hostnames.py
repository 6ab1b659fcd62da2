"""Hostname and optional-URL validation for custom domains (pure functions)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from engine.errors import ValidationFailed
from engine.links.urls import validate_destination

_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Names that can never be somebody's custom domain.
_RESERVED_SUFFIXES = ("localhost", "local", "invalid", "test", "example", "internal")


def _strip_url(value: str, field: str) -> str:
    """`https://links.example.com/` → `links.example.com`: people paste the URL of the domain.
    Only a bare origin is taken; a path, query, port or credentials stay an error."""
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValidationFailed(f"{field} is not a valid hostname", field=field) from None
    if (
        parts.scheme.lower() not in ("http", "https")
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or port is not None
        or parts.username is not None
        or not parts.hostname
    ):
        raise ValidationFailed(f"{field} must be a hostname like links.example.com, not a URL", field=field)
    return parts.hostname


def validate_hostname(value: object, *, field: str = "domain", platform_domain: str = "") -> str:
    """A lower-case ASCII (IDNA) hostname with at least two labels, not an IP address or port;
    a bare http(s) origin (`https://host/`) is reduced to its host."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{field} is required", field=field)
    host = _strip_url(value.strip(), field).lower().rstrip(".")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationFailed(f"{field} is not a valid hostname", field=field) from None
    if len(host) > 253:
        raise ValidationFailed(f"{field} is longer than 253 characters", field=field)
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValidationFailed(f"{field} must be a hostname, not an IP address", field=field)
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        raise ValidationFailed(
            f"{field} must be a hostname like links.example.com (letters, digits, hyphens)", field=field
        )
    if labels[-1].isdigit():
        raise ValidationFailed(f"{field} has a numeric top-level label", field=field)
    if labels[-1] in _RESERVED_SUFFIXES:
        raise ValidationFailed(f"{field} uses a reserved top-level name", field=field)
    platform = platform_domain.lower().rsplit(":", 1)[0]
    if platform and (host == platform or host.endswith("." + platform)):
        raise ValidationFailed(f"{field} belongs to the platform's own domain", field=field)
    return host


def validate_optional_url(value: str | None, *, field: str) -> str | None:
    """None or "" clears the setting; anything else must be an absolute http(s) URL."""
    if value is None or not value.strip():
        return None
    return validate_destination(value, field=field)
