"""Anonymous visitor ids: a keyed hash of IP + User-Agent whose key rotates every UTC day.

The same browser on the same IP gets the same id all day (for unique counts and sticky A/B
variants), a new one the next day, and the id cannot be reversed to the IP without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime

VISITOR_ID_BYTES = 16  # 32 hex characters
_KEY_LABEL = b"linkrift/visitor-id/v1/"
_MAX_CACHED_DAYS = 8


def utc_day(ts: float) -> date:
    """The UTC calendar day of a unix timestamp."""
    return datetime.fromtimestamp(ts, UTC).date()


def daily_key(secret: str, day: date) -> bytes:
    """The day's hashing key: HMAC-SHA256(secret, label + ISO date)."""
    return hmac.new(secret.encode(), _KEY_LABEL + day.isoformat().encode(), hashlib.sha256).digest()


def _hash(key: bytes, ip: str, user_agent: str) -> str:
    # NUL cannot occur in an IP or an HTTP header value, so the join is unambiguous.
    data = f"{ip}\x00{user_agent}".encode(errors="surrogatepass")
    return hashlib.blake2b(data, key=key, digest_size=VISITOR_ID_BYTES).hexdigest()


def visitor_id(ip: str, user_agent: str, secret: str, day: date) -> str:
    """32 hex chars identifying (ip, user_agent) for one UTC day under one secret."""
    return _hash(daily_key(secret, day), ip, user_agent)


class VisitorIdFactory:
    """visitor_id() with the daily key derived once per day instead of once per click."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._keys: dict[date, bytes] = {}

    def _key(self, day: date) -> bytes:
        key = self._keys.get(day)
        if key is None:
            if len(self._keys) >= _MAX_CACHED_DAYS:
                self._keys.clear()
            key = self._keys[day] = daily_key(self._secret, day)
        return key

    def __call__(self, ip: str, user_agent: str, day: date) -> str:
        return _hash(self._key(day), ip, user_agent)

    def at(self, ip: str, user_agent: str, ts: float) -> str:
        """The visitor id for a click at unix time `ts`."""
        return self(ip, user_agent, utc_day(ts))
