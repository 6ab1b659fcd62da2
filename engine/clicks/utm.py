"""Normalisers for the request facts a click carries: UTM parameters, referer host, language."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MAX_UTM_LENGTH = 255
_MAX_HOST_LENGTH = 253
_MAX_ACCEPT_LANGUAGE = 1024
# Referers and Accept-Language headers repeat heavily across clicks; parsing them costs ~1.5-3 µs.
HEADER_CACHE_SIZE = 4096

# Lowercased host names: ASCII letters, digits, hyphens, dots, underscores, or IDN characters.
_HOST = re.compile(r"^[a-z0-9_\-.\u00a1-\uffff]+$")
_LANGUAGE_TAG = re.compile(r"^([a-z]{2,3})(?:-([a-z]{4}))?(?:-([a-z]{2}|\d{3}))?(?:-[a-z0-9]{1,8})*$")


def extract_utm(query: Mapping[str, str] | str) -> dict[str, str]:
    """The non-empty UTM parameters of a query string, URL or mapping: trimmed, cut to 255 chars.

    Keys match case-insensitively; with repeated keys the first non-empty value wins.
    """
    items: Iterable[tuple[str, str]]
    if isinstance(query, str):
        items = parse_qsl(query.split("#", 1)[0].split("?", 1)[-1])
    else:
        items = query.items()
    utm: dict[str, str] = {}
    for key, value in items:
        # Mappings decoded from JSON may hold non-string values; they are not UTM data.
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        name = key.strip().lower()
        if name in UTM_FIELDS and name not in utm:
            cleaned = value.strip()[:MAX_UTM_LENGTH].strip()
            if cleaned:
                utm[name] = cleaned
    return utm


@functools.lru_cache(maxsize=HEADER_CACHE_SIZE)
def referer_domain(referer: str) -> str:
    """Lowercased host of a Referer without a leading "www.", or "" when there is none."""
    referer = referer.strip()
    if not referer:
        return ""
    if "://" not in referer:
        referer = "//" + referer
    try:
        host = urlsplit(referer).hostname or ""
    except ValueError:
        return ""
    host = host.rstrip(".").removeprefix("www.")
    if not host or len(host) > _MAX_HOST_LENGTH:
        return ""
    if ":" in host:  # bracketed IPv6 literal
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            return ""
    return host if _HOST.match(host) else ""


def _normalise_tag(tag: str) -> str:
    match = _LANGUAGE_TAG.match(tag.lower().replace("_", "-"))
    if match is None:
        return ""
    language, script, region = match.groups()
    parts = [language]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)


@functools.lru_cache(maxsize=HEADER_CACHE_SIZE)
def primary_language(accept_language: str) -> str:
    """The preferred language of an Accept-Language header in BCP 47 casing, "" when none.

    The highest q-value wins (the first listed among equals); "*" and q=0 are skipped; only
    language, script and region are kept: "en-us" -> "en-US", "zh-hant-tw" -> "zh-Hant-TW".
    """
    best, best_q = "", 0.0
    for item in accept_language[:_MAX_ACCEPT_LANGUAGE].split(","):
        tag, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if not 0.0 < q <= 1.0 or q <= best_q:
            continue
        normalised = _normalise_tag(tag.strip())
        if normalised:
            best, best_q = normalised, q
    return best
