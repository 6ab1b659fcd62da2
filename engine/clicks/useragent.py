"""User-agent parsing for click enrichment: browser, OS and device class from one header.

Backed by ua-parser 1.x with the `ua-parser-rs` (Rust regex) resolver when it is installed;
results are memoised per UA string because a handful of browsers make up most traffic.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

import ua_parser
from ua_parser import Domain, Resolver

log = logging.getLogger(__name__)

DeviceType = Literal["desktop", "mobile", "tablet", "bot", ""]

UA_CACHE_SIZE = 8192
# Longer strings are not real browsers; cutting them bounds regex time and cache memory.
MAX_UA_LENGTH = 1024

# Lowercased substrings, checked in this order. "Android" without "Mobile" is Google's documented
# tablet convention; iPadOS 13+ Safari sends a Macintosh UA and is counted as desktop (unknowable
# from the header alone).
_TABLET_MARKERS = ("ipad", "kindle", "silk/", "playbook", "tablet;")
_MOBILE_MARKERS = (
    "mobi",  # covers "Mobile", "Mobi" and "Opera Mobi"
    "iphone",
    "ipod",
    "windows phone",
    "blackberry",
    "bb10",
    "opera mini",
    "kaios",
)
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS"})


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a UA says about the client; empty strings mean unknown."""

    device_type: DeviceType
    browser: str
    browser_version: str  # "major.minor" or "major"
    os: str
    os_version: str
    is_spider: bool  # ua-parser's device family "Spider": a self-declared crawler


EMPTY_DEVICE = DeviceInfo("", "", "", "", "", False)


@functools.cache
def _resolver() -> Resolver:
    """The fastest ua-parser resolver available, built once (loading the matchers takes ~0.2 s)."""
    try:
        if ua_parser.RegexResolver is not None:
            return ua_parser.RegexResolver(ua_parser.load_lazy_builtins())
    except Exception:  # a broken accelerator must not stop enrichment
        log.warning("event=ua_resolver_fallback reason=ua_parser_rs_failed", exc_info=True)
    log.warning("event=ua_resolver_slow resolver=basic hint='pip install ua-parser-rs'")
    return ua_parser.BasicResolver(ua_parser.load_builtins())


def resolver_name() -> str:
    """Module of the resolver in use, e.g. "ua_parser.regex" for the Rust accelerator."""
    return type(_resolver()).__module__


def _version(major: str | None, minor: str | None) -> str:
    if not major:
        return ""
    return f"{major}.{minor}" if minor else major


def _known(family: str | None) -> str:
    return "" if not family or family == "Other" else family


def _device_type(ua_lower: str, os_family: str, is_spider: bool) -> DeviceType:
    if is_spider:
        return "bot"
    if any(m in ua_lower for m in _TABLET_MARKERS) or ("android" in ua_lower and "mobile" not in ua_lower):
        return "tablet"
    if any(m in ua_lower for m in _MOBILE_MARKERS) or os_family in _MOBILE_OS:
        return "mobile"
    return "desktop"


@functools.lru_cache(maxsize=UA_CACHE_SIZE)
def parse_user_agent(ua: str) -> DeviceInfo:
    """Parse a User-Agent header; an empty or blank header gives EMPTY_DEVICE."""
    ua = ua.strip()[:MAX_UA_LENGTH]
    if not ua:
        return EMPTY_DEVICE
    result = _resolver()(ua, Domain.ALL)
    agent, os, device = result.user_agent, result.os, result.device
    is_spider = device is not None and device.family == "Spider"
    os_family = _known(os.family) if os else ""
    return DeviceInfo(
        device_type=_device_type(ua.lower(), os_family, is_spider),
        browser=_known(agent.family) if agent else "",
        browser_version=_version(agent.major, agent.minor) if agent else "",
        os=os_family,
        os_version=_version(os.major, os.minor) if os else "",
        is_spider=is_spider,
    )
