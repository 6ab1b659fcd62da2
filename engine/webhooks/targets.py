"""Where a webhook may point: http(s) URLs whose host resolves only to public addresses (SSRF guard).

Checked when a webhook is saved and again before every delivery, because DNS can change in between.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from engine.errors import ValidationFailed

MAX_URL_LENGTH = 2048


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


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local  # includes 169.254.169.254, the cloud metadata service
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


async def resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise ValidationFailed(f"url host {host!r} does not resolve", field="url") from None
    return sorted({str(info[4][0]) for info in infos})


async def validate_target(url: str, *, allow_private: bool) -> str:
    """The normalised URL; ValidationFailed(field="url") if malformed or, unless `allow_private`,
    if any address the host resolves to is private, loopback, link-local or otherwise internal."""
    url = validate_url_shape(url)
    if allow_private:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for address in await resolve(host, port):
        if not is_public_address(address):
            raise ValidationFailed(f"url resolves to a non-public address ({address})", field="url")
    return url
