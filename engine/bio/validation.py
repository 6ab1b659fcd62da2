"""Validation of bio page input: slugs, theme colours and fonts, scheduling windows (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from engine.errors import ValidationFailed
from engine.qr.render import validate_color

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,98}[a-z0-9])?$")
FONT_RE = re.compile(r"^[A-Za-z0-9 -]{1,50}$")
THEME_COLOR_KEYS = ("background", "text", "button", "button_text")
DEFAULT_COLORS = {"background": "#FFFFFF", "text": "#111827", "button": "#4F46E5", "button_text": "#FFFFFF"}
DEFAULT_FONT: dict[str, Any] = {"family": "system-ui", "weight": 400}


def validate_slug(value: str, *, field: str = "slug") -> str:
    slug = value.strip().lower() if isinstance(value, str) else ""
    if not _SLUG_RE.match(slug):
        raise ValidationFailed(
            f"{field} must be 1-100 lower-case letters, digits, '-' or '_', starting and ending with a letter or digit",
            field=field,
        )
    return slug


def validate_colors(colors: dict[str, Any], *, field: str = "colors") -> dict[str, str]:
    unknown = set(colors) - set(THEME_COLOR_KEYS)
    if unknown:
        raise ValidationFailed(
            f"{field} has unknown key {sorted(unknown)[0]!r}", field=f"{field}.{sorted(unknown)[0]}"
        )
    return {key: validate_color(value, field=f"{field}.{key}") for key, value in colors.items()}


def validate_font(font: dict[str, Any], *, field: str = "font") -> dict[str, Any]:
    unknown = set(font) - {"family", "weight"}
    if unknown:
        raise ValidationFailed(
            f"{field} has unknown key {sorted(unknown)[0]!r}", field=f"{field}.{sorted(unknown)[0]}"
        )
    out: dict[str, Any] = {}
    if "family" in font:
        if not isinstance(font["family"], str) or not FONT_RE.match(font["family"]):
            raise ValidationFailed(
                f"{field}.family must be a font name (letters, digits, spaces)", field=f"{field}.family"
            )
        out["family"] = font["family"]
    if "weight" in font:
        weight = font["weight"]
        if not isinstance(weight, int) or isinstance(weight, bool) or weight not in range(100, 1000, 100):
            raise ValidationFailed(f"{field}.weight must be 100, 200, ... 900", field=f"{field}.weight")
        out["weight"] = weight
    return out


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def validate_window(visible_from: datetime | None, visible_until: datetime | None) -> None:
    if visible_from is not None and visible_until is not None and visible_until <= visible_from:
        raise ValidationFailed("visible_until must be after visible_from", field="visible_until")
