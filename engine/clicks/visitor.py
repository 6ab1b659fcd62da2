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
_EPOCH = date(1970, 1, 1)
_DAY_SECONDS = 86400
# Inside [day start + margin, day end - margin) a timestamp's UTC day is certain, whatever
# sub-microsecond rounding datetime.fromtimestamp applies at the boundaries.
_DAY_MARGIN = 0.001


def utc_day(ts: float) -> date:
    """The UTC calendar day of a unix timestamp."""
    return datetime.fromtimestamp(ts, UTC).date()


def daily_key(secret: str, day: date) -> bytes:
    """The day's hashing key: HMAC-SHA256(secret, label + ISO date)."""
    return hmac.new(secret.encode(), _KEY_LABEL + day.isoformat().encode(), hashlib.sha256).digest()


def _data(ip: str, user_agent: str) -> bytes:
    # NUL cannot occur in an IP or an HTTP header value, so the join is unambiguous.
    return f"{ip}\x00{user_agent}".encode(errors="surrogatepass")


def _hash(key: bytes, ip: str, user_agent: str) -> str:
    return hashlib.blake2b(_data(ip, user_agent), key=key, digest_size=VISITOR_ID_BYTES).hexdigest()


def visitor_id(ip: str, user_agent: str, secret: str, day: date) -> str:
    """32 hex chars identifying (ip, user_agent) for one UTC day under one secret."""
    return _hash(daily_key(secret, day), ip, user_agent)


class VisitorIdFactory:
    """visitor_id() with the daily key derived once per day instead of once per click."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._keys: dict[date, bytes] = {}
        # The current day's keyed hash state (copied per id: the key block is compressed once a
        # day, not once a click) and the timestamps it certainly covers (`at` skips utc_day).
        self._today = hashlib.blake2b(digest_size=VISITOR_ID_BYTES)
        self._today_from = 0.0
        self._today_until = 0.0

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
        if not self._today_from <= ts < self._today_until:
            day = utc_day(ts)
            self._today = hashlib.blake2b(key=self._key(day), digest_size=VISITOR_ID_BYTES)
            start = (day - _EPOCH).days * _DAY_SECONDS
            # Near midnight `ts` falls outside the range: the next call derives the day again.
            self._today_from, self._today_until = start + _DAY_MARGIN, start + _DAY_SECONDS - _DAY_MARGIN
        state = self._today.copy()
        state.update(_data(ip, user_agent))
        return state.hexdigest()
