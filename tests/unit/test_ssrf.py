"""The metadata fetcher's SSRF guard and HTML parsing; a loopback server stands in for the web."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from engine.errors import ValidationFailed
from engine.links import metadata
from engine.links.metadata import FetchFailed, fetch_metadata, parse_metadata, resolve_checked
from engine.outbound import PublicOnlyResolver, UnsafeDestination, is_public_address
from engine.webhooks.targets import validate_target

PAGE = (
    b"<!doctype html><html><head><meta charset='utf-8'><title> Hello &amp; welcome </title>"
    b"<meta name='description' content='A  test page'>"
    b"<meta property='og:image' content='/img/card.png'>"
    b"<link rel='shortcut icon' href='/static/fav.ico'></head><body>hi</body></html>"
)


# The one address table every outbound fetch is checked against (engine.outbound).
NON_PUBLIC = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.170.2",
    "100.100.100.200",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "100.64.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",
    "64:ff9b:1::a00:1",  # local-use NAT64
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2002:5db8:d822::1"]


def _url(address: str) -> str:
    return f"http://[{address}]/" if ":" in address else f"http://{address}/"


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", NON_PUBLIC)
async def test_every_outbound_fetch_refuses_the_same_addresses(address: str) -> None:
    """Link previews and webhooks (on save and before each delivery) share the guard."""
    with pytest.raises(UnsafeDestination):
        await resolve_checked(address, 80, "production")
    with pytest.raises(ValidationFailed) as refused:
        await validate_target(_url(address), allow_private=False)
    assert refused.value.field == "url" and "LINKRIFT_WEBHOOK_ALLOW_PRIVATE" in refused.value.message
    assert await validate_target(_url(address), allow_private=True) == _url(address)


@pytest.mark.parametrize("address", NON_PUBLIC)
async def test_webhook_connections_resolve_only_to_public_addresses(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    """At delivery a name is resolved once more, by the connection itself: DNS rebinding to an
    internal address after the check is refused too."""

    async def rebound(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)[: 4 if ":" in address else 2])]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebound)
    resolver = PublicOnlyResolver()
    try:
        with pytest.raises(OSError, match="non-public"):
            await resolver.resolve("hooks.example", 443, socket.AF_UNSPEC)
    finally:
        await resolver.close()


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


async def test_every_resolved_address_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_getaddrinfo(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(UnsafeDestination, match=r"10\.0\.0\.5"):
        await resolve_checked("mixed.example", 443, "production")
    assert await resolve_checked("mixed.example", 443, "allow_private") == ["93.184.216.34", "10.0.0.5"]


@pytest.mark.parametrize("host", ["localhost", "metadata.google.internal", "api.localhost"])
async def test_blocked_names(host: str) -> None:
    with pytest.raises(UnsafeDestination):
        await resolve_checked(host, 80, "production")


def test_parse_metadata_resolves_relative_urls() -> None:
    found = parse_metadata(PAGE.decode(), "http://site.example/a/b")
    assert found.title == "Hello & welcome"
    assert found.description == "A test page"
    assert found.og_image_url == "http://site.example/img/card.png"
    assert found.favicon_url == "http://site.example/static/fav.ico"


def test_parse_metadata_defaults_and_refuses_script_urls() -> None:
    found = parse_metadata(
        "<html><meta property='og:image' content='javascript:alert(1)'>", "https://x.example/p"
    )
    assert found.title is None and found.og_image_url is None
    assert found.favicon_url == "https://x.example/favicon.ico"


Handler = Callable[[str], bytes]


@pytest_asyncio.fixture
async def local_server() -> AsyncIterator[tuple[int, dict[str, Handler], list[str]]]:
    """A raw HTTP server on 127.0.0.1: routes map a path to a full response; `seen` logs paths."""
    routes: dict[str, Handler] = {}
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        seen.append(path)
        writer.write(routes.get(path, lambda p: b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")(path))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, routes, seen
    server.close()
    await server.wait_closed()


def _html(body: bytes, extra: str = "") -> Handler:
    return lambda _: (
        (
            f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        ).encode()
        + body
    )


def _redirect(to: str) -> Handler:
    return lambda _: f"HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n".encode()


async def test_production_mode_refuses_loopback_server_without_connecting(local_server) -> None:
    port, routes, seen = local_server
    routes["/page"] = _html(PAGE)
    with pytest.raises(UnsafeDestination):
        await fetch_metadata(f"http://127.0.0.1:{port}/page", "production")
    assert seen == []


async def test_allow_private_mode_fetches_loopback_server(local_server) -> None:
    port, routes, seen = local_server
    routes["/page"] = _html(PAGE)
    found = await fetch_metadata(f"http://127.0.0.1:{port}/page", "allow_private")
    assert found.title == "Hello & welcome"
    assert found.favicon_url == f"http://127.0.0.1:{port}/static/fav.ico"
    assert seen == ["/page"]


async def test_redirects_are_followed_by_hand_and_each_hop_is_checked(local_server, monkeypatch) -> None:
    port, routes, seen = local_server
    routes["/r1"] = _redirect("/r2")
    routes["/r2"] = _redirect(f"http://127.0.0.1:{port}/page")
    routes["/page"] = _html(PAGE)
    checked: list[str] = []
    real = metadata.resolve_checked

    async def spy(host: str, port_: int, mode: metadata.FetchMode) -> list[str]:
        checked.append(host)
        return await real(host, port_, mode)

    monkeypatch.setattr(metadata, "resolve_checked", spy)
    found = await fetch_metadata(f"http://127.0.0.1:{port}/r1", "allow_private")
    assert found.description == "A test page"
    assert seen == ["/r1", "/r2", "/page"] and len(checked) == 3


async def test_redirect_to_private_address_is_refused(local_server, monkeypatch) -> None:
    """A public first hop (faked by DNS) that redirects to loopback is refused at the second hop."""
    port, routes, seen = local_server
    routes["/page"] = _html(PAGE)

    async def fake_getaddrinfo(host: str, port_: int, **_: object) -> list[tuple[object, ...]]:
        assert host == "public.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port_))]

    async def fake_http_get(url: str, mode: metadata.FetchMode) -> object:
        if url.startswith("http://public.example"):
            await resolve_checked("public.example", 80, mode)
            return metadata._Response(302, {"location": f"http://127.0.0.1:{port}/page"}, b"")
        return await real_get(url, mode)

    real_get = metadata._http_get
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(metadata, "_http_get", fake_http_get)
    with pytest.raises(UnsafeDestination):
        await fetch_metadata("http://public.example/start", "production")
    assert seen == []


async def test_too_many_redirects(local_server) -> None:
    port, routes, _ = local_server
    for i in range(5):
        routes[f"/loop{i}"] = _redirect(f"/loop{i + 1}")
    with pytest.raises(FetchFailed, match="redirects"):
        await fetch_metadata(f"http://127.0.0.1:{port}/loop0", "allow_private")


async def test_non_html_is_not_parsed_and_size_is_capped(local_server) -> None:
    port, routes, _ = local_server
    routes["/json"] = lambda _: (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    with pytest.raises(FetchFailed):
        await fetch_metadata(f"http://127.0.0.1:{port}/json", "allow_private")
    big = b"<html><head><title>Big</title></head><body>" + b"x" * (2 * metadata.MAX_BYTES)
    routes["/big"] = lambda _: b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + big
    assert (await fetch_metadata(f"http://127.0.0.1:{port}/big", "allow_private")).title == "Big"


async def test_chunked_body(local_server) -> None:
    port, routes, _ = local_server
    chunks = [PAGE[:40], PAGE[40:]]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    routes["/c"] = lambda _: (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    )
    assert (await fetch_metadata(f"http://127.0.0.1:{port}/c", "allow_private")).title == "Hello & welcome"


async def test_slow_server_hits_time_limit() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(1.5)
        writer.close()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(FetchFailed, match="no answer"):
            await fetch_metadata(f"http://127.0.0.1:{port}/", "allow_private", time_limit=0.3)
    finally:
        server.close()


async def test_off_mode_fetches_nothing() -> None:
    with pytest.raises(UnsafeDestination):
        await fetch_metadata("https://example.com/", "off")
