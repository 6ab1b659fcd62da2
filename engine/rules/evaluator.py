"""The redirect rule evaluator: compile a link's rules once, then pick a destination per request.

`compile_rules` does every expensive step (validation, regexes, time zones, lowered sets) so that
`evaluate`, which runs on every redirect, only compares plain values. Rules are tried by priority,
highest first, ties broken by the smaller id; the first match wins; no match means the link's URL.
"""

from __future__ import annotations

import logging
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from engine.errors import ValidationFailed
from engine.rules.ab import choose_variant
from engine.rules.conditions import bound_instant, parse_clock, validate_rule
from engine.rules.models import Decision, RequestContext, Rule, Variant

log = logging.getLogger(__name__)

# Inputs a visitor controls are cut to these lengths before any parsing or regex search.
MAX_REFERER_LENGTH: Final = 2048
MAX_ACCEPT_LANGUAGE_LENGTH: Final = 1024
MAX_LANGUAGE_ENTRIES: Final = 32


class Matcher(Protocol):
    def __call__(self, ctx: RequestContext) -> bool: ...


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    rule_type: str
    priority: int
    destination: str
    matches: Matcher
    variants: tuple[Variant, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """A link's active rules in evaluation order, ready for `evaluate`. Immutable; cache it."""

    rules: tuple[CompiledRule, ...]
    skipped: tuple[str, ...] = ()  # ids of stored rules that no longer validate
    uses_device: bool = False
    uses_geo: bool = False


def compile_rules(rules: Iterable[Rule]) -> CompiledRules:
    """Validate and pre-parse active rules. A stored rule that fails validation is skipped and
    logged rather than raised, so one bad row never breaks a link's redirect."""
    compiled: list[CompiledRule] = []
    skipped: list[str] = []
    for rule in rules:
        if not rule.is_active:
            continue
        try:
            conditions = validate_rule(rule.rule_type, rule.conditions, rule.destination_url, rule.weight)
        except ValidationFailed as exc:
            log.warning("rule_skipped rule_id=%s field=%s reason=%s", rule.id, exc.field, exc.message)
            skipped.append(rule.id)
            continue
        variants = tuple(Variant(**v) for v in conditions.get("variants", ()))
        compiled.append(
            CompiledRule(
                id=rule.id,
                rule_type=rule.rule_type,
                priority=rule.priority,
                destination=rule.destination_url,
                matches=_MATCHER_BUILDERS[rule.rule_type](conditions),
                variants=variants,
            )
        )
    compiled.sort(key=lambda r: (-r.priority, r.id))
    return CompiledRules(
        rules=tuple(compiled),
        skipped=tuple(skipped),
        uses_device=any(r.rule_type == "device" for r in compiled),
        uses_geo=any(r.rule_type == "geo" for r in compiled),
    )


def evaluate(
    compiled: CompiledRules,
    default_url: str,
    ctx: RequestContext,
    observed: Mapping[str, Mapping[str, int]] | None = None,
) -> Decision:
    """The destination for one request. `observed` maps an A/B rule id to visits per variant."""
    for rule in compiled.rules:
        if not rule.matches(ctx):
            continue
        if not rule.variants:
            return Decision(destination=rule.destination, rule_id=rule.id)
        # Without a visitor id there is nothing to stick to; the request time spreads such
        # visitors over the variants instead of sending them all to one.
        visitor = ctx.visitor_id or f"anonymous:{ctx.now.isoformat()}"
        variant = choose_variant(
            rule.variants,
            visitor,
            rule.id,
            observed.get(rule.id) if observed else None,
            ctx.ab_assigned.get(rule.id),
        )
        return Decision(destination=variant.url, rule_id=rule.id, variant=variant.id)
    return Decision(destination=default_url)


def needs_device(compiled: CompiledRules) -> bool:
    """Whether any rule reads device type, OS or browser (so the user agent must be parsed)."""
    return compiled.uses_device


def needs_geo(compiled: CompiledRules) -> bool:
    """Whether any rule reads country, region or city (so the IP must be looked up)."""
    return compiled.uses_geo


def parse_accept_language(header: str) -> list[str]:
    """Language tags of an Accept-Language header, lowercased, most preferred first, q=0 and `*`
    dropped; equal q values keep header order."""
    return [tag for tag, _ in _language_preferences(header)]


def _language_preferences(header: str) -> list[tuple[str, float]]:
    preferences: list[tuple[str, float]] = []
    for entry in header[:MAX_ACCEPT_LANGUAGE_LENGTH].split(",")[:MAX_LANGUAGE_ENTRIES]:
        tag, _, params = entry.partition(";")
        tag = tag.strip().lower().replace("_", "-")
        if not tag or tag == "*" or len(tag) > 35:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if 0.0 < quality <= 1.0:
            preferences.append((tag, quality))
    preferences.sort(key=lambda item: -item[1])
    return preferences


# --- matchers -------------------------------------------------------------------------------------


class _DeviceMatcher:
    __slots__ = ("browsers", "device_types", "os_families")

    def __init__(self, conditions: Mapping[str, Any]) -> None:
        self.device_types = _optional_set(conditions, "device_types")
        self.os_families = _optional_set(conditions, "os")
        self.browsers = _optional_set(conditions, "browsers")

    def __call__(self, ctx: RequestContext) -> bool:
        return (
            _allows(self.device_types, ctx.device_type)
            and _allows(self.os_families, ctx.os)
            and _allows(self.browsers, ctx.browser)
        )


class _GeoMatcher:
    __slots__ = ("cities", "countries", "exclude", "regions")

    def __init__(self, conditions: Mapping[str, Any]) -> None:
        self.countries = _optional_set(conditions, "countries")
        self.regions = _optional_set(conditions, "regions")
        self.cities = _optional_set(conditions, "cities")
        self.exclude: bool = conditions.get("exclude", False)

    def __call__(self, ctx: RequestContext) -> bool:
        inside = (
            _allows(self.countries, ctx.country)
            and _allows(self.regions, ctx.region)
            and self._city_allowed(ctx.city)
        )
        return inside != self.exclude

    def _city_allowed(self, city: str) -> bool:
        if self.cities is None:
            return True
        # DB-IP City Lite names parts of a city "London (Shadwell)": a rule for London covers them.
        return _allows(self.cities, city) or _allows(self.cities, city.partition(" (")[0])


class _TimeMatcher:
    __slots__ = ("end", "start", "weekdays", "windows", "zone")

    def __init__(self, conditions: Mapping[str, Any]) -> None:
        self.zone = zoneinfo.ZoneInfo(conditions["timezone"])
        self.weekdays = frozenset(conditions.get("weekdays", range(7)))
        self.windows = tuple(
            (parse_clock(w["start"]), parse_clock(w["end"])) for w in conditions.get("hours", ())
        )
        self.start = _bound(conditions, "start", self.zone)
        self.end = _bound(conditions, "end", self.zone)

    def __call__(self, ctx: RequestContext) -> bool:
        now = ctx.now if ctx.now.tzinfo is not None else ctx.now.replace(tzinfo=UTC)
        if (self.start is not None and now < self.start) or (self.end is not None and now >= self.end):
            return False
        if not self.windows and len(self.weekdays) == 7:
            return True
        try:
            local = now.astimezone(self.zone)
        except (OverflowError, ValueError):
            return False
        day = local.weekday()
        if not self.windows:
            return day in self.weekdays
        minute = local.hour * 60 + local.minute
        for start, end in self.windows:
            if start < end:
                if start <= minute < end and day in self.weekdays:
                    return True
            # A window past midnight belongs to the day it starts on: Fri 22:00-02:00 covers Sat 01:00.
            elif (minute >= start and day in self.weekdays) or (
                minute < end and (day - 1) % 7 in self.weekdays
            ):
                return True
        return False


class _ReferrerMatcher:
    __slots__ = ("direct", "exact_hosts", "host_suffixes", "pattern")

    def __init__(self, conditions: Mapping[str, Any]) -> None:
        hosts: Sequence[str] = conditions.get("hosts", ())
        self.exact_hosts = frozenset(h for h in hosts if not h.startswith("*."))
        self.host_suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))
        pattern = conditions.get("pattern")
        self.pattern = re.compile(pattern, re.IGNORECASE) if pattern is not None else None
        self.direct: bool = conditions.get("direct", False)

    def __call__(self, ctx: RequestContext) -> bool:
        referer = ctx.referer[:MAX_REFERER_LENGTH].strip()
        if not referer:
            return self.direct
        if self.pattern is not None and self.pattern.search(referer):
            return True
        if self.exact_hosts or self.host_suffixes:
            host = _host_of(referer)
            return host in self.exact_hosts or host.endswith(self.host_suffixes)
        return False


class _LanguageMatcher:
    __slots__ = ("languages",)

    def __init__(self, conditions: Mapping[str, Any]) -> None:
        self.languages: tuple[str, ...] = tuple(conditions["languages"])

    def __call__(self, ctx: RequestContext) -> bool:
        preferences = _language_preferences(ctx.accept_language)
        if not preferences:
            return False
        # Only the visitor's top choice (or choices tied at the top q) counts: a German speaker who
        # also accepts French must not be caught by a French rule that happens to come first.
        best = preferences[0][1]
        for tag, quality in preferences:
            if quality < best:
                break
            for language in self.languages:
                if tag == language or tag.startswith(language + "-"):
                    return True
        return False


def _always(ctx: RequestContext) -> bool:
    return True


def _ab_matcher(conditions: Mapping[str, Any]) -> Matcher:
    # An A/B rule matches every request; its variants decide the destination.
    return _always


_MATCHER_BUILDERS: Final[dict[str, Callable[[Mapping[str, Any]], Matcher]]] = {
    "device": _DeviceMatcher,
    "geo": _GeoMatcher,
    "time": _TimeMatcher,
    "referrer": _ReferrerMatcher,
    "language": _LanguageMatcher,
    "ab_test": _ab_matcher,
}


def _optional_set(conditions: Mapping[str, Any], key: str) -> frozenset[str] | None:
    values = conditions.get(key)
    return None if values is None else frozenset(v.casefold() for v in values)


def _allows(allowed: frozenset[str] | None, value: str) -> bool:
    return allowed is None or value.strip().casefold() in allowed


def _bound(conditions: Mapping[str, Any], key: str, zone: zoneinfo.ZoneInfo) -> datetime | None:
    text = conditions.get(key)
    return None if text is None else bound_instant(text, zone, is_end=key == "end")


def _host_of(referer: str) -> str:
    try:
        parts = urlsplit(referer)
        if not parts.netloc:  # a referer without a scheme ("example.com/x") still names a host
            parts = urlsplit(f"//{referer}")
        host = parts.hostname
    except ValueError:
        return ""
    return (host or "").rstrip(".")
