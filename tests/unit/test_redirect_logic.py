"""Pure pieces of the redirect: link state, blocklist, client IP, access cookies, paths, settings."""

from __future__ import annotations

import pytest

from api.redirect import _destination, short_code
from engine.config import SettingsError, load_settings
from engine.links.access_cookies import sign_access, verify_access
from engine.links.admission import LinkState, client_ip, host_blocked, link_state
from engine.links.cache import ResolvedLink, normalize_host
from engine.links.models import CachedLink


def _link(**overrides: object) -> CachedLink:
    values: dict[str, object] = {
        "id": "L1",
        "workspace_id": "W",
        "domain_id": "",
        "short_code": "abc",
        "url": "https://d.example/p",
        "is_active": True,
        "expires_at": None,
        "max_clicks": None,
        "password_hash": None,
    }
    values.update(overrides)
    return CachedLink(**values)  # type: ignore[arg-type]


def test_link_state() -> None:
    assert link_state(None, 100.0) is LinkState.NOT_FOUND
    assert link_state(_link(is_active=False), 100.0) is LinkState.NOT_FOUND
    assert link_state(_link(expires_at=100.0), 100.0) is LinkState.EXPIRED
    assert link_state(_link(expires_at=100.5), 100.0) is LinkState.OK
    assert link_state(_link(max_clicks=1), 100.0) is LinkState.OK  # exhaustion is admission's call


@pytest.mark.parametrize(
    ("url", "blocked"),
    [
        ("https://evil.example/x", True),
        ("https://a.b.EVIL.example./x", True),
        ("https://notevil.example/x", False),
        ("https://evil.example.org/x", False),
        ("http://[::1", True),  # unparsable: never redirect to it
    ],
)
def test_host_blocked(url: str, blocked: bool) -> None:
    assert host_blocked(url, ["evil.example"]) is blocked
    assert host_blocked(url, []) is False


@pytest.mark.parametrize(
    ("remote", "xff", "trust", "proxies", "expected"),
    [
        ("192.0.2.1", "203.0.113.7", False, [], "192.0.2.1"),
        ("192.0.2.1", "203.0.113.7", True, [], "203.0.113.7"),
        ("192.0.2.1", "1.1.1.1, 203.0.113.7", True, [], "203.0.113.7"),  # leftmost entries are forgeable
        ("10.0.0.9", "1.1.1.1, 203.0.113.7, 10.0.0.2", True, ["10.0.0.0/8"], "203.0.113.7"),
        ("10.0.0.9", "10.0.0.3, 10.0.0.2", True, ["10.0.0.0/8"], "10.0.0.3"),
        # A peer that is not one of our proxies cannot choose its address with the header.
        ("192.0.2.1", "203.0.113.7", True, ["10.0.0.0/8"], "192.0.2.1"),
        ("192.0.2.1", "2001:db8::1", True, [], "2001:db8::1"),
        ("192.0.2.1", "garbage", True, [], "192.0.2.1"),
        ("192.0.2.1", "", True, [], "192.0.2.1"),
    ],
)
def test_client_ip(remote: str, xff: str, trust: bool, proxies: list[str], expected: str) -> None:
    assert client_ip(remote, xff, trust_proxy_headers=trust, trusted_proxies=proxies) == expected


def test_access_cookie() -> None:
    token = sign_access("s3cret", "L1", "$argon2id$hash", now=1000.0, ttl=60)
    assert verify_access("s3cret", token, "L1", "$argon2id$hash", now=1059.0)
    assert not verify_access("s3cret", token, "L1", "$argon2id$hash", now=1060.0)  # expired
    assert not verify_access("s3cret", token, "L2", "$argon2id$hash", now=1000.0)  # other link
    assert not verify_access("s3cret", token, "L1", "$argon2id$new", now=1000.0)  # password changed
    assert not verify_access("other", token, "L1", "$argon2id$hash", now=1000.0)  # other secret
    link_id, expires, mac = token.split(".")
    assert not verify_access(
        "s3cret", f"{link_id}.{int(expires) + 999}.{mac}", "L1", "$argon2id$hash", 1000.0
    )
    for bad in (None, "", "L1", "L1.x.y", "L1.1.2.3"):
        assert not verify_access("s3cret", bad, "L1", "$argon2id$hash", now=1000.0)


@pytest.mark.parametrize(
    ("segment", "code"),
    [
        ("abc", "abc"),
        ("abc/", "abc"),
        ("abc ", "abc"),
        ("café", "café"),
        (" ", None),
        ("x" * 51, None),
        ("\udcff", None),
    ],
)
def test_short_code(segment: str, code: str | None) -> None:
    assert short_code(segment) == code


def test_normalize_host() -> None:
    assert normalize_host("Go.Example.COM.:8443") == "go.example.com"
    assert normalize_host("[::1]:8080") == "[::1]"
    assert normalize_host("localhost") == "localhost"


def test_destination_merges_query() -> None:
    link = _link(url="https://d.example/p?a=1", forward_query=True, utm={"utm_source": "news"})
    resolved = ResolvedLink.of(link)
    assert _destination(link.url, resolved, "a=2&utm_source=x&t=1&t=2") == (
        "https://d.example/p?a=1&utm_source=news&t=1&t=2"
    )
    plain = ResolvedLink.of(_link())
    assert _destination("https://d.example/p", plain, "t=1") == "https://d.example/p"


def test_settings_lists_from_comma_strings() -> None:
    settings = load_settings(blocked_hosts=" Evil.example., bad.example ,", trusted_proxies="10.0.0.0/8")
    assert settings.blocked_hosts == ["evil.example", "bad.example"]
    assert settings.trusted_proxies == ["10.0.0.0/8"]
    with pytest.raises(SettingsError, match="LINKRIFT_TRUSTED_PROXIES"):
        load_settings(trusted_proxies="not-a-network")
