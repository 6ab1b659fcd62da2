"""Short codes and destination URL validation."""

from __future__ import annotations

import pytest

from engine.errors import ValidationFailed
from engine.links.shortcodes import ALPHABET, generate_code, validate_custom_code
from engine.links.urls import validate_destination


def test_generated_codes_use_unambiguous_alphabet() -> None:
    codes = {generate_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == 7 and set(c) <= set(ALPHABET) for c in codes)
    assert not set("0O1lI") & set(ALPHABET)


@pytest.mark.parametrize("code", ["promo", "Promo-2026", "a_b", "x1"])
def test_custom_codes_accepted(code: str) -> None:
    assert validate_custom_code(code) == code


@pytest.mark.parametrize("code", ["", "a", "-lead", "sp ace", "x" * 51, "api", "HEALTHZ", "a/b", "é"])
def test_custom_codes_rejected(code: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_custom_code(code)
    assert info.value.field == "short_code"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,x",
        "ftp://x.example",
        "https://",
        "//x.example",
        "http://x.example:abc",
        "https://x.example/a b",
        "",
        None,
        42,
        "https://" + "a" * 5000,
    ],
)
def test_bad_destinations_rejected(url: object) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_destination(url)
    assert info.value.field == "url"


def test_blocklist_matches_host_and_subdomains() -> None:
    assert validate_destination("https://ok.example/x", blocklist=["evil.test"]) == "https://ok.example/x"
    for url in ("https://evil.test/", "https://a.b.EVIL.test./x"):
        with pytest.raises(ValidationFailed):
            validate_destination(url, blocklist=["evil.test"])
