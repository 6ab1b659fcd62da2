"""Webhook pure logic: event catalogue, link-change mapping, backoff, SSRF address rules, signatures."""

from __future__ import annotations

import ipaddress
import random

import pytest

from engine.auth import webhook_signing
from engine.errors import ValidationFailed
from engine.outbound import is_public_address
from engine.webhooks.delivery import retry_delay, signature_header
from engine.webhooks.events import from_link_change, validate_events
from engine.webhooks.targets import validate_url_shape


def test_validate_events() -> None:
    assert validate_events(["link.deleted", "link.created", "link.deleted"]) == [
        "link.created",
        "link.deleted",
    ]
    for bad in ([], ["link.created", "nope"]):
        with pytest.raises(ValidationFailed) as exc:
            validate_events(bad)
        assert exc.value.field == "events"


def test_link_change_mapping_is_deterministic() -> None:
    change = {"event": "exhausted", "link_id": "L", "workspace_id": "W", "at": "t1", "short_code": "c"}
    first, second = from_link_change(change), from_link_change(dict(change))
    assert first is not None and first == second and first[1] == "link.exhausted"
    assert from_link_change({**change, "at": "t2"})[0] != first[0]  # type: ignore[index]
    assert from_link_change({**change, "event": "reindexed"}) is None
    assert from_link_change({"event": "created"}) is None


def test_retry_delay_schedule_and_jitter() -> None:
    schedule = (30.0, 120.0, 600.0)
    rng = random.Random(1)
    delays = [retry_delay(n, schedule, rng) for n in (1, 2, 3)]
    for got, base in zip(delays, schedule, strict=True):
        assert got is not None and base * 0.8 <= got <= base * 1.2
    assert retry_delay(4, schedule) is None
    assert len({retry_delay(1, schedule, rng) for _ in range(20)}) > 1


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fd00::1", False),
        ("2606:4700::1111", True),
        ("0.0.0.0", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "url", ["ftp://x.example", "https://", "https://u:p@x.example", "https://x.example:99999"]
)
def test_url_shape_rejects(url: str) -> None:
    with pytest.raises(ValidationFailed):
        validate_url_shape(url)


def test_rotation_header_verifies_with_either_secret() -> None:
    old, new = webhook_signing.generate_webhook_secret(), webhook_signing.generate_webhook_secret()
    header = signature_header((new, old), "msg_1", 1_700_000_000, b"{}")
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": header}
    for secret in (new, old):
        webhook_signing.verify(secret, headers, b"{}", now=1_700_000_000)
    with pytest.raises(webhook_signing.WebhookVerificationError):
        webhook_signing.verify(webhook_signing.generate_webhook_secret(), headers, b"{}", now=1_700_000_000)


def test_qr_and_bio_items_from_feed_clicks() -> None:
    from engine.webhooks.click_batches import bio_click, qr_scan

    click = {
        "event_id": "e1", "ts": 1700000000.5, "link_id": "L", "short_code": "abc", "kind": "qr",
        "qr_code_id": "Q", "bio_link_id": "", "destination": "https://d.example/", "country_code": "DE",
        "device_type": "", "ip": "never-in-the-feed-anyway",
    }  # fmt: skip
    assert qr_scan(click, {}) == {
        "event_id": "e1", "qr_code_id": "Q", "link_id": "L", "short_code": "abc", "ts": 1700000000.5,
        "country_code": "DE", "device_type": None,
    }  # fmt: skip
    bio = {**click, "kind": "bio", "qr_code_id": "", "bio_link_id": "B", "link_id": "B"}
    assert bio_click(bio, {"B": "P"}) == {
        "event_id": "e1", "bio_page_id": "P", "bio_link_id": "B", "url": "https://d.example/", "ts": 1700000000.5,
    }  # fmt: skip
    assert bio_click(bio, {})["bio_page_id"] is None  # the button was deleted since
