"""Click events: the raw click the redirect front end emits and the enriched click the worker sinks.

Both are plain dataclasses serialised with orjson, so api and streams share one wire format
(topic `clicks.raw`, key = link id) without depending on Faust records in the core.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

import orjson

ClickKind = Literal["redirect", "qr", "bio"]
T = TypeVar("T", bound="JsonRecord")


class JsonRecord:
    """orjson wire format shared by the click dataclasses; unknown keys are ignored on load so
    producers and consumers can be upgraded one at a time."""

    __slots__ = ()

    def dumps(self) -> bytes:
        # orjson serialises dataclasses natively, ~10x faster than orjson.dumps(asdict(self)).
        return orjson.dumps(self)

    @classmethod
    def loads(cls: type[T], data: bytes | str | dict[str, Any]) -> T:
        obj = data if isinstance(data, dict) else orjson.loads(data)
        try:
            return cls(**obj)  # the usual case: exactly this version's fields
        except TypeError:
            known = _field_names(cls)
            return cls(**{k: v for k, v in obj.items() if k in known})


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))
    return names


@dataclass(slots=True)
class RawClick(JsonRecord):
    """What the redirect knows at the moment it answers. Produced without waiting."""

    event_id: str  # uuid4 hex chosen at the redirect; the identity of this click everywhere
    ts: float  # unix seconds (UTC) when the redirect answered
    link_id: str
    workspace_id: str
    domain: str
    short_code: str
    destination: str
    rule_id: str = ""
    variant: str = ""
    kind: ClickKind = "redirect"
    method: str = "GET"
    ip: str = ""
    user_agent: str = ""
    referer: str = ""
    accept_language: str = ""
    visitor_id: str = ""
    utm: dict[str, str] = field(default_factory=dict)
    qr_code_id: str = ""
    bio_link_id: str = ""
    # Set by the redirect when it does not send the IP (LINKRIFT_STORE_IP=false).
    country_code: str = ""
    region: str = ""
    city: str = ""
    # The X-Request-ID of the redirect (engine.observability), so a click can be followed from
    # the api's log lines to the worker's.
    request_id: str = ""


# A RawClick's wire form in two parts, for the redirect front's hot path: the fields that are the
# same for every click of one link, host, destination and method, serialized once per cache
# entry (`click_prefix`), and the rest, serialized per click (`click_line`). The line parses to
# exactly the RawClick with those fields (tests/unit/test_click_line.py); orjson serializing a
# dict of the per-click fields costs ~0.8 µs where building the slotted dataclass and
# serializing it cost ~4 µs.
PREFIX_FIELDS = ("link_id", "workspace_id", "domain", "short_code", "destination", "method")


def click_prefix(
    link_id: str, workspace_id: str, domain: str, short_code: str, destination: str, method: str
) -> bytes:
    """`{"link_id":…,…,"method":…,` — the opening of every such click line."""
    return (
        orjson.dumps(
            {
                "link_id": link_id,
                "workspace_id": workspace_id,
                "domain": domain,
                "short_code": short_code,
                "destination": destination,
                "method": method,
            }
        )[:-1]
        + b","
    )


def click_line(
    prefix: bytes,
    event_id: str,
    ts: float,
    rule_id: str,
    variant: str,
    kind: str,
    ip: str,
    user_agent: str,
    referer: str,
    accept_language: str,
    visitor_id: str,
    utm: dict[str, str],
    qr_code_id: str,
    country_code: str,
    region: str,
    city: str,
    request_id: str,
) -> bytes:
    """One RawClick's JSON line: `prefix` (click_prefix) and the per-click fields."""
    return (
        prefix
        + orjson.dumps(
            {
                "event_id": event_id,
                "ts": ts,
                "rule_id": rule_id,
                "variant": variant,
                "kind": kind,
                "ip": ip,
                "user_agent": user_agent,
                "referer": referer,
                "accept_language": accept_language,
                "visitor_id": visitor_id,
                "utm": utm,
                "qr_code_id": qr_code_id,
                "bio_link_id": "",
                "country_code": country_code,
                "region": region,
                "city": city,
                "request_id": request_id,
            }
        )[1:]
    )


@dataclass(slots=True)
class EnrichedClick(JsonRecord):
    """A raw click plus everything the worker derives; one row of ClickHouse clicks_analytics."""

    event_id: str
    ts: float
    link_id: str
    workspace_id: str
    domain: str
    short_code: str
    destination: str
    rule_id: str
    variant: str
    kind: str
    method: str
    ip: str
    user_agent: str
    referer: str
    referer_domain: str
    language: str
    visitor_id: str
    is_unique: bool
    is_bot: bool
    is_preview: bool
    country_code: str = ""
    region: str = ""
    city: str = ""
    device_type: str = ""
    browser: str = ""
    browser_version: str = ""
    os: str = ""
    os_version: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""
    qr_code_id: str = ""
    bio_link_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
