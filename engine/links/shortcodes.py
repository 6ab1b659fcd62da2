"""Short codes: generation from an unambiguous alphabet and validation of custom codes."""

from __future__ import annotations

import re
import secrets

from engine.errors import ValidationFailed

# No 0/O, 1/l/I: codes are read aloud and typed from print.
ALPHABET = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
GENERATED_LENGTH = 7
_CUSTOM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,49}$")
# Paths the front end serves itself; a link may never shadow them.
RESERVED = frozenset(
    {
        "api",
        "healthz",
        "metrics",
        "docs",
        "openapi.json",
        "static",
        "favicon.ico",
        "robots.txt",
        "_",
        "internal",
        "webhooks",
        "login",
        "signup",
        "admin",
        "stream",
    }
)


def generate_code(length: int = GENERATED_LENGTH) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def validate_custom_code(code: str) -> str:
    if not isinstance(code, str) or not _CUSTOM.match(code):
        raise ValidationFailed(
            "short_code must be 2-50 characters of letters, digits, '_' or '-', starting with a letter or digit",
            field="short_code",
        )
    if code.lower() in RESERVED:
        raise ValidationFailed(f"short_code {code!r} is reserved", field="short_code")
    return code
