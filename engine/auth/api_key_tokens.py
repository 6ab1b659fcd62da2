"""API keys: generation, recognisable format with an offline checksum, hashing, and scopes.

Format: `lr_` + 32 base62 random chars (~190 bits) + 6 base62 chars of CRC32(random part),
like GitHub's tokens, so secret scanners can tell a real key from a typo without a database.
"""

from __future__ import annotations

import hmac
import secrets
import string
import zlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from engine.auth.tokens import hash_token
from engine.errors import ValidationFailed

API_KEY_PREFIX = "lr_"
KEY_PREFIX_LENGTH = 12  # api_keys.key_prefix is VARCHAR(12)
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_RANDOM_LENGTH = 32
_CHECKSUM_LENGTH = 6  # 62**6 > 2**32, so any CRC32 fits
API_KEY_LENGTH = len(API_KEY_PREFIX) + _RANDOM_LENGTH + _CHECKSUM_LENGTH

SCOPES: frozenset[str] = frozenset(
    {
        "links:read",
        "links:write",
        "analytics:read",
        "domains:read",
        "domains:write",
        "webhooks:read",
        "webhooks:write",
        "workspace:read",
        "workspace:admin",
        "billing:admin",
    }
)
# A broader scope grants these narrower ones. `workspace:admin` covers every workspace scope but
# not `billing:admin`: spending money is granted explicitly, never as a side effect.
_IMPLIED_SCOPES: dict[str, frozenset[str]] = {
    "links:write": frozenset({"links:read"}),
    "domains:write": frozenset({"domains:read"}),
    "webhooks:write": frozenset({"webhooks:read"}),
    "workspace:admin": SCOPES - {"workspace:admin", "billing:admin"},
}


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    plaintext: str = field(repr=False)  # shown to the user once, never stored
    prefix: str
    key_hash: str


def _base62(n: int, width: int) -> str:
    chars = []
    for _ in range(width):
        n, rem = divmod(n, 62)
        chars.append(_BASE62[rem])
    return "".join(reversed(chars))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), _CHECKSUM_LENGTH)


def generate_api_key() -> GeneratedKey:
    random_part = "".join(secrets.choice(_BASE62) for _ in range(_RANDOM_LENGTH))
    plaintext = API_KEY_PREFIX + random_part + _checksum(random_part)
    return GeneratedKey(plaintext=plaintext, prefix=key_prefix(plaintext), key_hash=hash_api_key(plaintext))


def key_prefix(plaintext: str) -> str:
    """The first 12 characters ("lr_" + 9): safe to display and to index for lookup."""
    return plaintext[:KEY_PREFIX_LENGTH]


def hash_api_key(plaintext: str) -> str:
    """SHA-256 hex, not argon2: keys are ~190 random bits, so a slow hash adds nothing against
    guessing but would cost a full argon2 run on every API request."""
    return hash_token(plaintext)


def looks_like_api_key(candidate: str) -> bool:
    """Format and checksum are valid. Says nothing about whether the key exists or is revoked."""
    if len(candidate) != API_KEY_LENGTH or not candidate.startswith(API_KEY_PREFIX):
        return False
    body = candidate[len(API_KEY_PREFIX) :]
    if not all(c in _BASE62 for c in body):
        return False
    random_part, checksum = body[:_RANDOM_LENGTH], body[_RANDOM_LENGTH:]
    return hmac.compare_digest(_checksum(random_part), checksum)


def verify_api_key(plaintext: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(plaintext).encode(), stored_hash.encode())


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Sorted, de-duplicated scopes; ValidationFailed(field="scopes") naming any unknown ones."""
    requested = set(scopes)
    unknown = requested - SCOPES
    if unknown:
        raise ValidationFailed(
            f"unknown scopes: {', '.join(sorted(unknown))}; valid scopes are {', '.join(sorted(SCOPES))}",
            field="scopes",
        )
    return sorted(requested)


def scope_allows(granted: Collection[str], needed: str) -> bool:
    return needed in granted or any(needed in _IMPLIED_SCOPES.get(g, ()) for g in granted)
