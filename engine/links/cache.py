"""Link lookup tiers for the redirect: in-process LRU (seconds) → Redis (minutes) → PostgreSQL.

A change anywhere is announced on a Redis pub/sub channel (by the worker's link-change agent),
and every api replica drops the entry from its LRU; Redis entries are deleted by the agent.
PostgreSQL down → whatever the caches hold is served; Redis down → PostgreSQL directly.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Generic, Literal, TypeVar

import asyncpg
import redis.asyncio as redis
from redis.exceptions import RedisError

from engine.links.models import CachedLink
from engine.links.repository import load_cached_link
from engine.naming import RedisKeys

log = logging.getLogger(__name__)

Tier = Literal["lru", "redis", "postgres", "miss", "stale"]
_MISSING = b"\x00missing"
K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A small LRU with per-entry expiry, for hot keys on the redirect path."""

    def __init__(self, maxsize: int, ttl: float) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def lookup(self, key: K, *, allow_stale: bool = False) -> tuple[bool, V | None]:
        """(found, value): a cached None (a known-missing key) is distinguishable from a miss."""
        item = self._data.get(key)
        if item is None:
            return False, None
        expires, value = item
        if expires < time.monotonic() and not allow_stale:
            return False, None
        self._data.move_to_end(key)
        return True, value

    def set(self, key: K, value: V, ttl: float | None = None) -> None:
        self._data[key] = (time.monotonic() + (self.ttl if ttl is None else ttl), value)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


class LinkResolver:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        redis_ttl: int = 300,
        lru_ttl: float = 5.0,
        lru_size: int = 50_000,
    ) -> None:
        self.pool = pool
        self.redis = client
        self.keys = keys
        self.redis_ttl = redis_ttl
        # Stale entries are kept (not served) so PostgreSQL outages can fall back to them.
        self.lru: TTLCache[tuple[str, str], CachedLink | None] = TTLCache(lru_size, lru_ttl)

    def invalidate(self, short_code: str, domain_id: str = "") -> None:
        self.lru.pop((domain_id, short_code))

    async def resolve(self, short_code: str, domain_id: str = "") -> tuple[CachedLink | None, Tier]:
        key = (domain_id, short_code)
        found, hit = self.lru.lookup(key)
        if found:
            return hit, "lru"
        redis_key = self.keys.link(short_code, domain_id)
        redis_ok = True
        try:
            cached = await self.redis.get(redis_key)
        except RedisError:
            redis_ok = False
            cached = None
        if cached is not None:
            link = None if cached == _MISSING else CachedLink.loads(cached)
            self.lru.set(key, link)
            return link, "redis"
        try:
            async with self.pool.acquire() as conn:
                link = await load_cached_link(conn, short_code, domain_id or None)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            found, stale = self.lru.lookup(key, allow_stale=True)
            log.warning("postgres unavailable on resolve code=%s error=%s", short_code, exc)
            if found:
                return stale, "stale"
            raise
        if redis_ok:
            try:
                # Unknown codes are cached briefly too, so a scan of random codes cannot hammer PG.
                value = link.dumps() if link else _MISSING
                await self.redis.set(redis_key, value, ex=self.redis_ttl if link else 5)
            except RedisError:
                pass
        self.lru.set(key, link, None if link else 1.0)
        return link, "postgres" if link else "miss"
