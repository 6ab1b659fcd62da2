"""A submitted rule as a whole (type, conditions, destination, weight, priority, is_active),
checked and normalized before it is stored; the per-type condition checks are in conditions.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import ValidationFailed
from engine.rules.conditions import validate_rule

MAX_RULES_PER_LINK = 50
MAX_PRIORITY = 1_000_000


def validate_rule_input(data: Mapping[str, Any]) -> dict[str, Any]:
    """A complete rule (rule_type, conditions, destination_url, weight, priority, is_active),
    normalized; ValidationFailed names the field."""
    priority = data.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > MAX_PRIORITY:
        raise ValidationFailed(f"priority must be an integer within ±{MAX_PRIORITY}", field="priority")
    is_active = data.get("is_active", True)
    if not isinstance(is_active, bool):
        raise ValidationFailed("is_active must be true or false", field="is_active")
    rule_type = data.get("rule_type")
    if not isinstance(rule_type, str):
        raise ValidationFailed("rule_type is required", field="rule_type")
    destination = data.get("destination_url")
    if destination is not None and not isinstance(destination, str):
        raise ValidationFailed("destination_url must be a string", field="destination_url")
    conditions = validate_rule(rule_type, data.get("conditions") or {}, destination, data.get("weight"))
    return {
        "rule_type": rule_type,
        "priority": priority,
        "is_active": is_active,
        "conditions": conditions,
        # The column is NOT NULL; an A/B rule without its own destination sends to its variants.
        "destination_url": destination or "",
        "weight": data.get("weight"),
    }
