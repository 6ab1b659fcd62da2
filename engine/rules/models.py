"""Plain data for the redirect rule evaluator: stored rules, the request facts and the decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

RuleType = Literal["device", "geo", "time", "referrer", "language", "ab_test"]
RULE_TYPES: Final[tuple[RuleType, ...]] = ("device", "geo", "time", "referrer", "language", "ab_test")
DEVICE_TYPES: Final[frozenset[str]] = frozenset({"desktop", "mobile", "tablet"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One `link_rules` row. Higher `priority` is evaluated first; ties go to the smaller id."""

    id: str
    rule_type: str
    priority: int
    conditions: Mapping[str, Any]
    destination_url: str
    weight: int | None = None
    is_active: bool = True


@dataclass(slots=True)
class RequestContext:
    """What the redirect knows about one request; empty strings mean "unknown". Not frozen: one
    is built per redirect with rules, and a frozen dataclass's __init__ pays an
    object.__setattr__ call per field; nothing changes it after it is built."""

    now: datetime  # aware, UTC
    visitor_id: str = ""
    device_type: str = ""
    os: str = ""
    browser: str = ""
    country: str = ""
    region: str = ""
    city: str = ""
    referer: str = ""
    accept_language: str = ""
    ab_assigned: Mapping[str, str] = field(default_factory=dict)  # rule id -> variant id (cookie)


class Decision(NamedTuple):
    """Where to send the visitor and why; `rule_id` is empty when the link's own URL won.
    (A named tuple: one is built per redirect with rules, at a third of a frozen dataclass's
    cost.)"""

    destination: str
    rule_id: str = ""
    variant: str = ""


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an A/B test."""

    id: str
    url: str
    weight: int


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A `link_rules` row as the API shows it (engine/rules/repository.py returns these)."""

    id: str
    link_id: str
    rule_type: str
    priority: int
    is_active: bool
    conditions: dict[str, Any]
    destination_url: str
    weight: int | None
    created_at: datetime
    updated_at: datetime

    def editable(self) -> dict[str, Any]:
        """The fields a PATCH may change, as they are stored."""
        return {
            "rule_type": self.rule_type,
            "priority": self.priority,
            "is_active": self.is_active,
            "conditions": self.conditions,
            "destination_url": self.destination_url,
            "weight": self.weight,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "link_id": self.link_id,
            **self.editable(),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
