"""Where a webhook may point: http(s) URLs whose host resolves only to public addresses (SSRF guard).

Checked when a webhook is saved and again before every delivery; at delivery the connection also
resolves through `engine.outbound.PublicOnlyResolver`, so a DNS change in between cannot slip by.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from engine.errors import ValidationFailed
from engine.outbound import Unresolvable, UnsafeDestination, resolve_public

MAX_URL_LENGTH = 2048
ALLOW_PRIVATE_SETTING = "LINKRIFT_WEBHOOK_ALLOW_PRIVATE"


def validate_url_shape(url: str) -> str:
    """Syntactic checks only: scheme, host, length, no credentials."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise ValidationFailed(f"url must be at most {MAX_URL_LENGTH} characters", field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValidationFailed("url must be an http:// or https:// URL", field="url")
    if not parts.hostname:
        raise ValidationFailed("url must name a host", field="url")
    if parts.username or parts.password:
        raise ValidationFailed("url must not carry credentials", field="url")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValidationFailed("url has an invalid port", field="url") from None
    return url


async def validate_target(url: str, *, allow_private: bool) -> str:
    """The normalised URL; ValidationFailed(field="url") if malformed or, unless `allow_private`,
    if the host is refused by the one SSRF guard (engine.outbound): a blocked name or any
    address that is not public, IPv4 tunnelled in IPv6 included."""
    url = validate_url_shape(url)
    if allow_private:
        return url
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        await resolve_public(parts.hostname or "", port)
    except Unresolvable:
        raise ValidationFailed(f"url host {parts.hostname!r} does not resolve", field="url") from None
    except UnsafeDestination as exc:
        raise ValidationFailed(
            f"url refused: {exc}; for local development set {ALLOW_PRIVATE_SETTING}=true", field="url"
        ) from None
    return url
