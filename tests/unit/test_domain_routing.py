"""The DNS records a custom domain's owner is told to publish (`routing` in the API, the domains
page's table): a CNAME to the platform's host name, never a CNAME to an IP address."""

from __future__ import annotations

import pytest

from engine.domains.verification import RoutingTarget, routing_records


def test_host_name_gets_a_cname() -> None:
    assert routing_records("go.acme.com", RoutingTarget("lnk.example.org")) == [
        {"type": "CNAME", "name": "go.acme.com", "value": "lnk.example.org"},
    ]


def test_host_name_with_an_operator_address_adds_the_apex_a_record() -> None:
    assert routing_records("acme.com", RoutingTarget("lnk.example.org", "203.0.113.7")) == [
        {"type": "CNAME", "name": "acme.com", "value": "lnk.example.org"},
        {"type": "A", "name": "acme.com", "value": "203.0.113.7"},
    ]


@pytest.mark.parametrize(
    ("host", "record_type", "value"),
    [
        ("127.0.0.1", "A", "127.0.0.1"),
        ("203.0.113.7", "A", "203.0.113.7"),
        ("[2001:db8::1]", "AAAA", "2001:db8::1"),  # normalize_host keeps an IPv6 host's brackets
        ("2001:DB8:0:0::1", "AAAA", "2001:db8::1"),
    ],
)
def test_ip_host_gets_an_address_record_and_no_cname(host: str, record_type: str, value: str) -> None:
    assert routing_records("go.acme.com", RoutingTarget(host)) == [
        {"type": record_type, "name": "go.acme.com", "value": value},
    ]


def test_ip_host_and_operator_address_list_each_address_once() -> None:
    assert routing_records("go.acme.com", RoutingTarget("203.0.113.7", "203.0.113.7")) == [
        {"type": "A", "name": "go.acme.com", "value": "203.0.113.7"},
    ]
    assert routing_records("go.acme.com", RoutingTarget("[2001:db8::1]", "203.0.113.7")) == [
        {"type": "AAAA", "name": "go.acme.com", "value": "2001:db8::1"},
        {"type": "A", "name": "go.acme.com", "value": "203.0.113.7"},
    ]
