"""`bio.{domain}` hosts serve bio pages at `/{slug}`."""

from __future__ import annotations

import pytest

from api.bio import bio_host_domain


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("bio.example.com", "example.com"),
        ("BIO.Example.com:8080", "example.com"),
        ("bio.links.example.co.uk", "links.example.co.uk"),
        ("bio.localhost:8080", "localhost"),  # `linkrift dev`: browsers resolve *.localhost locally
        ("bio.internal", None),  # a single label is not a domain we serve
        ("bio.", None),
        ("biology.example.com", None),
        ("example.com", None),
        ("", None),
    ],
)
def test_bio_host_domain(host: str, domain: str | None) -> None:
    assert bio_host_domain(host) == domain
