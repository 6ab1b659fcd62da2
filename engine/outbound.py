"""The one SSRF guard for every request LinkRift makes to a user-supplied URL (link previews,
webhook checks and deliveries): only globally routable unicast addresses, with IPv4 addresses
tunnelled in IPv6 (mapped, 6to4, Teredo, NAT64) judged as the IPv4 address they carry."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that reach instance metadata services without an address check being able to help.
BLOCKED_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})
# Cloud metadata endpoints outside the link-local/private ranges (Alibaba sits in 100.64/10, AWS
# has an IPv6 one in fd00::/8); kept explicit so a change to `is_global` cannot reopen them.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class UnsafeDestination(Exception):
    """The host is refused: a blocked name or an address that is not public."""


class Unresolvable(Exception):
    """The host name does not resolve to any address."""


def is_public_address(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses that are no metadata endpoint."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None]
        if any(address in net for net in _NAT64):
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(e is not None and not is_public_address(e) for e in embedded):
            return False
    return not (
        address in _METADATA_ADDRESSES
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def literal_address(host: str) -> IPAddress | None:
    """`host` as an IP address when it is one (`[::1]` included), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_name(host: str) -> str:
    """The normalised host name; UnsafeDestination for localhost and metadata-service names."""
    name = host.lower().rstrip(".")
    if name in BLOCKED_NAMES or name == "localhost" or name.endswith(".localhost"):
        raise UnsafeDestination(f"host {host!r} is not allowed")
    return name


def check_addresses(host: str, addresses: list[IPAddress]) -> None:
    refused = [str(a) for a in addresses if not is_public_address(a)]
    if refused:
        raise UnsafeDestination(f"host {host!r} resolves to a non-public address ({', '.join(refused)})")


async def resolve_public(host: str, port: int, *, allow_private: bool = False) -> list[str]:
    """The addresses of `host` to connect to. Unless `allow_private` (local development and tests):
    UnsafeDestination when the name is blocked or any address is not public. Unresolvable when
    the name has no address."""
    name = host.lower().rstrip(".") if allow_private else check_name(host)
    literal = literal_address(name)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise Unresolvable(f"host {host!r} does not resolve: {exc}") from None
        addresses = []
        for info in infos:
            addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if addr not in addresses:
                addresses.append(addr)
    if not addresses:
        raise Unresolvable(f"host {host!r} has no addresses")
    if not allow_private:
        check_addresses(host, addresses)
    return [str(a) for a in addresses]


class PublicOnlyResolver(AbstractResolver):
    """An aiohttp resolver that refuses names resolving to a non-public address, so the address
    connected to is the address checked (no DNS rebinding between check and connect). aiohttp
    does not resolve IP literals: check those with `resolve_public` before the request."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            check_name(host)
            results = await self._inner.resolve(host, port, family)
            check_addresses(host, [ipaddress.ip_address(r["host"].split("%", 1)[0]) for r in results])
        except UnsafeDestination as exc:
            raise OSError(str(exc)) from None
        return results

    async def close(self) -> None:
        await self._inner.close()
