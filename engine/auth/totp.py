"""TOTP second factor (RFC 6238: SHA-1, 30 s, 6 digits, ±1 step) with replay protection, and
single-use recovery codes stored only as hashes."""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Iterable, Sequence

import pyotp
import segno

from engine.auth.tokens import hash_token

ISSUER = "LinkRift"
DIGITS = 6
INTERVAL = 30
VALID_WINDOW = 1  # accept the previous and next step too, for clock drift and slow typing
RECOVERY_CODE_COUNT = 10
_CODE_RE = re.compile(rf"[0-9]{{{DIGITS}}}")
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32, lowercase
_RECOVERY_RE = re.compile(r"([a-z2-7]{4})-?([a-z2-7]{4})")


def new_totp_secret() -> str:
    """160 random bits as base32 (RFC 4226's recommended length). Encrypt with SecretBox to store."""
    return pyotp.random_base32()


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)


def provisioning_uri(secret: str, email: str, issuer: str = ISSUER) -> str:
    """The otpauth:// URI authenticator apps scan."""
    return _totp(secret).provisioning_uri(name=email, issuer_name=issuer)


def provisioning_qr_svg(uri: str) -> str:
    """An inline <svg> QR code of the provisioning URI."""
    return str(segno.make(uri, error="m").svg_inline(scale=4))


def verify_totp(secret: str, code: str, last_used_step: int | None, now: float | None = None) -> int | None:
    """The time step the code matched (store it as the user's last used step), or None.

    A step at or before `last_used_step` is never accepted, so a code works at most once even
    inside its validity window.
    """
    code = code.strip()
    if not _CODE_RE.fullmatch(code):
        return None
    totp = _totp(secret)
    current_step = int((time.time() if now is None else now) // INTERVAL)
    matched: int | None = None
    for step in range(current_step - VALID_WINDOW, current_step + VALID_WINDOW + 1):
        if last_used_step is not None and step <= last_used_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code) and matched is None:
            matched = step
    return matched


def generate_recovery_codes(n: int = RECOVERY_CODE_COUNT) -> list[str]:
    """`xxxx-xxxx` lowercase base32 codes (40 bits each; login attempts are rate limited)."""
    codes = ("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(8)) for _ in range(n))
    return [f"{c[:4]}-{c[4:]}" for c in codes]


def _normalize_recovery_code(code: str) -> str | None:
    match = _RECOVERY_RE.fullmatch(code.strip().lower().replace(" ", ""))
    return f"{match[1]}-{match[2]}" if match else None


def hash_recovery_codes(codes: Iterable[str]) -> list[str]:
    """Hashes to store; the plaintext codes are shown to the user once."""
    hashes = []
    for code in codes:
        normalized = _normalize_recovery_code(code)
        if normalized is None:
            raise ValueError("not a recovery code: expected xxxx-xxxx in lowercase base32")
        hashes.append(hash_token(normalized))
    return hashes


def consume_recovery_code(code: str, hashes: Sequence[str]) -> list[str] | None:
    """The remaining hashes with the used one removed (store them back), or None if no match.

    Accepts the code with or without the dash, any case, surrounding spaces.
    """
    normalized = _normalize_recovery_code(code)
    if normalized is None:
        return None
    candidate = hash_token(normalized).encode()
    index: int | None = None
    for i, stored in enumerate(hashes):
        if hmac.compare_digest(candidate, stored.encode()) and index is None:
            index = i
    if index is None:
        return None
    return [h for i, h in enumerate(hashes) if i != index]
