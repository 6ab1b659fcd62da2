"""JWT access tokens (HS256, short-lived) and opaque bearer tokens stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from engine.auth.crypto import derive_key
from engine.errors import Unauthorized

ISSUER = "linkrift"
AUDIENCE = "linkrift-api"
ACCESS_TOKEN_TTL = 900
# Only `iat` gets slack: a token from a host whose clock runs a little ahead is still fine,
# but `exp` is honoured to the second.
CLOCK_SKEW = 30
# Token prefixes are public markers (for secret scanners and log redaction), not secrets.
REFRESH_TOKEN_PREFIX = "lrr_"  # noqa: S105
ONE_TIME_TOKEN_PREFIX = "lro_"  # noqa: S105

_ALGORITHM = "HS256"
_JWT_KEY_LABEL = "linkrift/jwt-hs256/v1"
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "sid", "aud", "iss", "jti"]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    session_id: str
    issued_at: int
    expires_at: int
    token_id: str


def _signing_key(secret: str) -> bytes:
    return derive_key(secret, _JWT_KEY_LABEL)


def issue_access_token(
    secret: str, user_id: str, session_id: str, ttl: int = ACCESS_TOKEN_TTL, now: float | None = None
) -> str:
    issued_at = int(time.time() if now is None else now)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(user_id),
        "sid": str(session_id),
        "iat": issued_at,
        "exp": issued_at + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, _signing_key(secret), algorithm=_ALGORITHM)


def decode_access_token(secret: str, token: str, now: float | None = None) -> AccessClaims:
    """Verify signature, issuer, audience and lifetime; raise Unauthorized saying which check failed."""
    try:
        claims = jwt.decode(
            token,
            _signing_key(secret),
            algorithms=[_ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # Time checks are done below against `now`, so tests and callers share one clock.
            options={"require": _REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False},
        )
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"access token is missing the {exc.claim!r} claim") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("access token has the wrong audience") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("access token has the wrong issuer") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("access token signature is invalid") from None
    except jwt.InvalidAlgorithmError:
        raise Unauthorized("access token uses a disallowed algorithm") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("access token is malformed") from None

    exp, iat, sub, sid, jti = (claims[k] for k in ("exp", "iat", "sub", "sid", "jti"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat)):
        raise Unauthorized("access token has non-integer exp/iat")
    if not all(isinstance(v, str) and v for v in (sub, sid, jti)):
        raise Unauthorized("access token has empty or non-string sub/sid/jti")
    current = time.time() if now is None else now
    if current >= exp:
        raise Unauthorized("access token has expired")
    if iat > current + CLOCK_SKEW:
        raise Unauthorized("access token was issued in the future")
    return AccessClaims(user_id=sub, session_id=sid, issued_at=iat, expires_at=exp, token_id=jti)


def new_refresh_token() -> str:
    """256 bits of randomness; the client holds it, the server stores only `hash_token` of it."""
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_one_time_token() -> str:
    """For password-reset, email-verification and invitation links; stored as `hash_token`."""
    return ONE_TIME_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex. A fast hash suffices: these tokens carry 256 bits of entropy, so no guessing."""
    return hashlib.sha256(token.encode()).hexdigest()
