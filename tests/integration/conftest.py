"""Fixtures the integration tests share (helper functions are in helpers.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest_asyncio

from engine.db.pool import create_pool
from tests.pipeline_fixtures import pipeline  # noqa: F401 - the fixture, for every test here


class DnsResponder(asyncio.DatagramProtocol):
    """Answers TXT queries from `records` (name → values); unknown names get NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        if name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            values = [f'"{v}"' for v in self.records[name]]
            response.answer.append(
                dns.rrset.from_text(question.name, 60, dns.rdataclass.IN, dns.rdatatype.TXT, *values)
            )
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest_asyncio.fixture
async def dns_server(monkeypatch) -> AsyncIterator[DnsResponder]:
    """The responder on a free loopback port; request it before `api` so the app points at it."""
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        DnsResponder, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    monkeypatch.setenv("LINKRIFT_DNS_NAMESERVER", f"127.0.0.1:{port}")
    monkeypatch.setenv("LINKRIFT_DNS_TIMEOUT", "2")
    yield protocol
    transport.close()


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on this test's database (with LinkRift's jsonb codec)."""
    p = await create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()
