"""Who gets through a short link: its state, the destination blocklist, the client address and
exact max_clicks admission. Everything is pure except `admit` (one Redis round trip).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from enum import StrEnum
from urllib.parse import urlsplit

import redis.asyncio as redis

from engine.links.models import CachedLink
from engine.naming import RedisKeys


class LinkState(StrEnum):
    """Why a link does (OK) or does not redirect; each has its own page and status."""

    OK = "ok"
    NOT_FOUND = "not_found"  # unknown, inactive or soft-deleted: 404
    EXPIRED = "expired"  # expires_at passed: 410
    EXHAUSTED = "exhausted"  # max_clicks reached: 410
    BLOCKED = "blocked"  # destination host blocklisted after the link was made: 410


def link_state(link: CachedLink | None, now: float) -> LinkState:
    """The state that decides before any admission: unknown/inactive, then expiry."""
    if link is None or not link.is_active:
        return LinkState.NOT_FOUND
    if link.expires_at is not None and now >= link.expires_at:
        return LinkState.EXPIRED
    return LinkState.OK


def host_blocked(url: str, blocklist: Collection[str]) -> bool:
    """Whether the URL's host is a blocked host or a subdomain of one (same test as creation)."""
    if not blocklist:
        return False
    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return True
    return any(host == b or host.endswith("." + b) for b in (b.lower().rstrip(".") for b in blocklist))


def client_ip(
    remote: str | None,
    forwarded_for: str | None,
    *,
    trust_proxy_headers: bool,
    trusted_proxies: Sequence[str] = (),
) -> str:
    """The visitor's address: the socket peer, or with trusted proxy headers the rightmost
    X-Forwarded-For hop that is not one of our proxies (entries left of it are client-forgeable).

    With `trusted_proxies` set, the header is honoured only when the socket peer itself is one of
    them: a client that reaches the server directly cannot choose its own address."""
    if not trust_proxy_headers or not forwarded_for:
        return remote or ""
    networks = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]
    if networks:
        try:
            peer = ipaddress.ip_address((remote or "").strip("[]"))
        except ValueError:
            return remote or ""
        if not any(peer in net for net in networks):
            return str(peer)
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop.strip("[]"))
        except ValueError:
            # Garbage in the header: stop at the last address we could trust.
            return remote or ""
        if not any(address in net for net in networks):
            return str(address)
    return str(ipaddress.ip_address(hops[0].strip("[]"))) if hops else remote or ""


# Count only admissions, never refusals: the counter is then the number of clicks let through,
# and comparing it with the *current* max_clicks makes raising the cap from 100 to 150 admit
# exactly 50 more (a plain INCR would also count the refused requests of an exhausted link).
_ADMIT_SCRIPT = """
local admitted = tonumber(redis.call('GET', KEYS[1]) or '0')
if admitted >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
return 1
"""


async def admit(client: redis.Redis, keys: RedisKeys, link: CachedLink) -> bool:
    """Exact max_clicks admission: one atomic script (check and increment), only for capped
    links. Raises RedisError."""
    if link.max_clicks is None:
        return True
    admitted = await client.eval(_ADMIT_SCRIPT, 1, keys.link_admitted(link.id), link.max_clicks)  # type: ignore[misc]
    return bool(admitted)
