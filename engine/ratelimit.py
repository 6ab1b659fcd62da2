"""Rate limiting with GCRA (the generic cell rate algorithm) in Redis, one round trip per check.

A limit of N requests per period P lets a burst of N through, then one request every P/N. The
state is one number per key, the theoretical arrival time (TAT), kept by a Lua script that reads
Redis' own clock, so api replicas with skewed clocks agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as redis

from engine.billing.plans import limits_for

DEFAULT_PERIOD = 60.0

# KEYS[1] = limit key; ARGV = emission interval (µs), burst window = limit * interval (µs).
# Returns {allowed, remaining, reset_after_us, retry_after_us}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
-- %.0f: tostring() would print µs timestamps as 1.7e+15 and lose precision.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((window - (new_tat - now)) / interval), new_tat - now, 0}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the bucket is full again
    retry_after: float  # seconds until the next request would be allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        """IETF draft RateLimit-* fields (and Retry-After when refused)."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_after)),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return out


class RateLimiter:
    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_GCRA)

    async def hit(self, key: str, limit: int, period: float = DEFAULT_PERIOD) -> Decision:
        """Count one request against `limit` per `period` seconds."""
        interval = int(period * 1_000_000 / limit)
        allowed, remaining, reset_us, retry_us = await self._script(
            keys=[key], args=[interval, interval * limit]
        )
        return Decision(bool(allowed), limit, int(remaining), reset_us / 1e6, retry_us / 1e6)


def key_limit(plan: str, override: int | None) -> int:
    """A key's requests a minute: its own `rate_limit` up to the plan's, else the plan's (a key
    made on a bigger plan gets no more than the current plan allows)."""
    most = limits_for(plan).api_requests_per_minute
    return most if override is None else min(override, most)
