"""Access cookies for password-protected links: proof that this browser entered the password.

The token is `{link_id}.{expires}.{mac}` with an HMAC-SHA256 over the link id, the expiry and the
link's current password hash, so changing the password revokes every cookie issued before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

ACCESS_COOKIE = "lr_pw"
ACCESS_TTL_SECONDS = 12 * 3600
_LABEL = b"linkrift/link-access/v1\x00"


def _mac(secret: str, link_id: str, expires: int, password_hash: str) -> str:
    message = _LABEL + f"{link_id}\x00{expires}\x00{password_hash}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_access(
    secret: str, link_id: str, password_hash: str, now: float, ttl: int = ACCESS_TTL_SECONDS
) -> str:
    expires = int(now) + ttl
    return f"{link_id}.{expires}.{_mac(secret, link_id, expires, password_hash)}"


def verify_access(secret: str, token: str | None, link_id: str, password_hash: str, now: float) -> bool:
    """True if the token was signed for this link and password and has not expired."""
    if not token:
        return False
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != link_id or not parts[1].isdigit():
        return False
    expires = int(parts[1])
    if expires <= now:
        return False
    return hmac.compare_digest(parts[2], _mac(secret, link_id, expires, password_hash))
