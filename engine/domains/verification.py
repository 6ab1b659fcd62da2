"""Domain ownership by DNS: the owner publishes TXT `_linkrift-verify.{domain}` = `linkrift-verify={token}`.

The resolver is dnspython's asyncio resolver, pointed at the system's nameservers or at the one
LINKRIFT_DNS_NAMESERVER names (ip or ip:port; tests run a local responder this way).
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

RECORD_PREFIX = "_linkrift-verify"
VALUE_PREFIX = "linkrift-verify="


class CheckOutcome(StrEnum):
    VERIFIED = "verified"
    MISMATCH = "mismatch"  # TXT records exist, none carries our token
    NOT_FOUND = "not_found"  # NXDOMAIN or no TXT record
    ERROR = "error"  # timeout, SERVFAIL, no nameserver answered


@dataclass(frozen=True, slots=True)
class DnsCheck:
    outcome: CheckOutcome
    detail: str
    found: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        return self.outcome is CheckOutcome.VERIFIED


def new_token() -> str:
    return secrets.token_urlsafe(24)


def record_name(domain: str) -> str:
    return f"{RECORD_PREFIX}.{domain}"


def record_value(token: str) -> str:
    return f"{VALUE_PREFIX}{token}"


def verification_record(domain: str, token: str) -> dict[str, Any]:
    """The dns_records entry stored on the domain and shown to its owner."""
    return {
        "type": "TXT",
        "name": record_name(domain),
        "value": record_value(token),
        "purpose": "verification",
    }


def token_from_records(records: object) -> str | None:
    if not isinstance(records, list):
        return None
    for record in records:
        if isinstance(record, dict) and record.get("purpose") == "verification":
            value = str(record.get("value", ""))
            if value.startswith(VALUE_PREFIX):
                return value.removeprefix(VALUE_PREFIX)
    return None


def parse_nameserver(value: str) -> tuple[str, int]:
    """`ip`, `ip:port` or `[ipv6]:port` → (ip, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, 53


class TxtVerifier:
    """Looks up the verification TXT record; never raises for DNS failures."""

    def __init__(self, nameserver: str | None = None, timeout: float = 3.0) -> None:
        self.nameserver = nameserver
        self.timeout = timeout

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if self.nameserver:
            resolver = dns.asyncresolver.Resolver(configure=False)
            host, port = parse_nameserver(self.nameserver)
            resolver.nameservers = [host]
            resolver.port = port
        else:
            resolver = dns.asyncresolver.Resolver()
        resolver.lifetime = self.timeout
        resolver.timeout = self.timeout
        return resolver

    async def check(self, domain: str, token: str) -> DnsCheck:
        name = record_name(domain)
        try:
            answer = await self._resolver().resolve(name, "TXT", search=False)
        except dns.resolver.NXDOMAIN:
            return DnsCheck(CheckOutcome.NOT_FOUND, f"{name} does not exist (NXDOMAIN)")
        except dns.resolver.NoAnswer:
            return DnsCheck(CheckOutcome.NOT_FOUND, f"{name} has no TXT record")
        except dns.resolver.NoResolverConfiguration:
            return DnsCheck(CheckOutcome.ERROR, "no DNS resolver is configured")
        except dns.exception.Timeout:
            return DnsCheck(CheckOutcome.ERROR, f"DNS lookup of {name} timed out")
        except dns.exception.DNSException as exc:
            return DnsCheck(CheckOutcome.ERROR, f"DNS lookup of {name} failed: {exc}")
        found = tuple(
            b"".join(rdata.strings).decode("utf-8", "replace")
            for rdata in answer
            if hasattr(rdata, "strings")
        )
        expected = record_value(token)
        if any(secrets.compare_digest(value.strip().encode(), expected.encode()) for value in found):
            return DnsCheck(CheckOutcome.VERIFIED, "verification record found", found)
        return DnsCheck(CheckOutcome.MISMATCH, f"{name} has TXT records but none is {expected!r}", found)


@dataclass(frozen=True, slots=True)
class RoutingTarget:
    """Where custom domains must point: the platform's host (a name, or an IP address in dev or on
    a server without a name) and, when the operator set one, its IPv4 address (for an A record: an
    apex domain cannot hold a CNAME)."""

    host: str
    ipv4: str | None = None


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def routing_records(domain: str, target: RoutingTarget) -> list[dict[str, str]]:
    """The DNS records that send `domain`'s traffic to LinkRift; publish one of them.

    A CNAME to the host when it is a name; when it is an IP address, a CNAME to it would be invalid
    DNS, so its address record instead (A for IPv4, AAAA for IPv6)."""
    address = _ip_address(target.host)
    if address is None:
        records = [{"type": "CNAME", "name": domain, "value": target.host}]
    else:
        records = [{"type": "A" if address.version == 4 else "AAAA", "name": domain, "value": str(address)}]
    if target.ipv4 and all(record["value"] != target.ipv4 for record in records):
        records.append({"type": "A", "name": domain, "value": target.ipv4})
    return records
