"""Link lookup tiers for the redirect: in-process LRU (seconds) → Redis (minutes) → PostgreSQL.

A change anywhere is announced on a Redis pub/sub channel (by the worker's link-change agent),
and every api replica drops the entry from its LRU; Redis entries are deleted by the agent.
PostgreSQL down → whatever the caches hold is served; Redis down → PostgreSQL directly.
A link's active rules travel inside its cache entry (one key, `link:{short_code}`), so a link
and its rules can never be read from two different versions.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import asyncpg
import redis.asyncio as redis
from redis.exceptions import RedisError

from engine.errors import ServiceUnavailable
from engine.links.models import CachedLink
from engine.links.repository import load_cached_link
from engine.naming import RedisKeys
from engine.rules.evaluator import CompiledRules, compile_rules
from engine.rules.models import Rule

log = logging.getLogger(__name__)

Tier = Literal["lru", "redis", "postgres", "miss", "stale"]
Backend = Literal["redis", "postgres"]
_MISSING = b"\x00missing"
# Errors that mean "PostgreSQL does not answer" (refused, reset, terminated, timed out, closed pool).
PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.ObjectNotInPrerequisiteStateError,
)
# After a Redis error the resolver goes straight to PostgreSQL for this long (no timeout per request).
REDIS_RETRY_SECONDS = 1.0
NEGATIVE_TTL_SECONDS = 5
AB_OBSERVED_TTL_SECONDS = 2.0
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


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """The domain a request's Host names; id "" is the platform's default domain."""

    id: str = ""
    default_redirect_url: str | None = None
    custom_404_url: str | None = None


DEFAULT_DOMAIN = DomainInfo()


@dataclass(frozen=True, slots=True)
class ResolvedLink:
    """A cached link with its rules compiled once per load, not once per request."""

    link: CachedLink
    rules: CompiledRules | None
    # Ids of the A/B rules, in evaluation order; derived once here rather than per redirect.
    ab_rule_ids: tuple[str, ...] = dataclasses.field(init=False, default=())

    def __post_init__(self) -> None:
        if self.rules:
            object.__setattr__(self, "ab_rule_ids", tuple(r.id for r in self.rules.rules if r.variants))

    @classmethod
    def of(cls, link: CachedLink) -> ResolvedLink:
        if not link.rules:
            return cls(link, None)
        rules = compile_rules(
            Rule(
                id=str(r["id"]),
                rule_type=r["rule_type"],
                priority=int(r.get("priority") or 0),
                conditions=r.get("conditions") or {},
                destination_url=r.get("destination_url") or "",
                weight=r.get("weight"),
            )
            for r in link.rules
        )
        return cls(link, rules)


@functools.lru_cache(maxsize=1024)  # runs on every redirect; a handful of hosts repeat
def normalize_host(host: str) -> str:
    """`Example.COM.:8443` → `example.com`; `[::1]:80` → `[::1]`."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host.split("]", 1)[0] + "]"
    else:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


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
        on_fallback: Callable[[Backend], None] | None = None,
    ) -> None:
        self.pool = pool
        self.redis = client
        self.keys = keys
        self.redis_ttl = redis_ttl
        self._on_fallback = on_fallback or (lambda backend: None)
        self._redis_retry_at = 0.0
        # Stale entries are kept (not served) so PostgreSQL outages can fall back to them.
        self.lru: TTLCache[tuple[str, str], ResolvedLink | None] = TTLCache(lru_size, lru_ttl)
        self.domains: TTLCache[str, DomainInfo] = TTLCache(10_000, 30.0)
        self._observed: TTLCache[str, dict[str, dict[str, int]]] = TTLCache(50_000, AB_OBSERVED_TTL_SECONDS)

    def invalidate(self, short_code: str, domain_id: str = "") -> None:
        self.lru.pop((domain_id, short_code))

    def clear(self) -> None:
        self.lru.clear()
        self.domains.clear()

    @property
    def redis_available(self) -> bool:
        return time.monotonic() >= self._redis_retry_at

    def redis_failed(self, exc: Exception) -> None:
        """Note a Redis error: count the fallback and skip Redis briefly."""
        if self.redis_available:
            log.warning("redis unavailable on redirect path error=%s", exc)
        self._redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
        self._on_fallback("redis")

    async def resolve(self, short_code: str, domain_id: str = "") -> tuple[ResolvedLink | None, Tier]:
        """The link for (domain, code), or None if there is none; ServiceUnavailable if unknown."""
        key = (domain_id, short_code)
        found, hit = self.lru.lookup(key)
        if found:
            return hit, "lru"
        redis_key = self.keys.link(short_code, domain_id)
        cached = await self._redis_get(redis_key)
        if cached is not None:
            resolved = None if cached == _MISSING else ResolvedLink.of(CachedLink.loads(cached))
            self.lru.set(key, resolved)
            return resolved, "redis"
        try:
            async with self.pool.acquire() as conn:
                link = await load_cached_link(conn, short_code, domain_id or None)
        except PG_UNAVAILABLE as exc:
            self._on_fallback("postgres")
            found, stale = self.lru.lookup(key, allow_stale=True)
            log.warning("postgres unavailable on resolve code=%s stale=%s error=%s", short_code, found, exc)
            if found:
                return stale, "stale"
            raise ServiceUnavailable("link storage is unavailable") from exc
        # Unknown codes are cached briefly too, so a scan of random codes cannot hammer PG.
        value = link.dumps() if link else _MISSING
        await self._redis_set(redis_key, value, self.redis_ttl if link else NEGATIVE_TTL_SECONDS)
        resolved = ResolvedLink.of(link) if link else None
        self.lru.set(key, resolved, None if link else 1.0)
        return resolved, "postgres" if link else "miss"

    async def domain(self, host: str) -> DomainInfo:
        """The verified custom domain named by `host`, else the default domain."""
        host = normalize_host(host)
        found, cached = self.domains.lookup(host)
        if found and cached is not None:
            return cached
        try:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT id, default_redirect_url, custom_404_url FROM domains"
                    " WHERE domain = $1 AND deleted_at IS NULL AND is_verified",
                    host,
                )
        except PG_UNAVAILABLE as exc:
            self._on_fallback("postgres")
            found, stale = self.domains.lookup(host, allow_stale=True)
            if found and stale is not None:
                return stale
            # Guessing "default domain" could serve another tenant's link under this host.
            raise ServiceUnavailable("domain storage is unavailable") from exc
        info = DEFAULT_DOMAIN
        if row is not None:
            info = DomainInfo(str(row["id"]), row["default_redirect_url"], row["custom_404_url"])
        self.domains.set(host, info)
        return info

    async def ab_observed(self, link_id: str) -> dict[str, dict[str, int]] | None:
        """The worker's observed A/B split {rule_id: {variant: visits}}, cached for a few seconds."""
        found, cached = self._observed.lookup(link_id)
        if found:
            return cached
        if not self.redis_available:
            return None
        try:
            raw = await self.redis.hgetall(self.keys.ab_observed(link_id))  # type: ignore[misc]
        except RedisError as exc:
            self.redis_failed(exc)
            return None
        observed: dict[str, dict[str, int]] = {}
        for field, count in raw.items():
            rule_id, _, variant = (field.decode() if isinstance(field, bytes) else str(field)).partition(":")
            try:
                observed.setdefault(rule_id, {})[variant] = int(count)
            except ValueError:
                continue
        self._observed.set(link_id, observed)
        return observed

    async def _redis_get(self, key: str) -> bytes | None:
        if not self.redis_available:
            return None
        try:
            value: bytes | None = await self.redis.get(key)
        except RedisError as exc:
            self.redis_failed(exc)
            return None
        return value

    async def _redis_set(self, key: str, value: bytes, ttl: int) -> None:
        if not self.redis_available:
            return
        try:
            await self.redis.set(key, value, ex=ttl)
        except RedisError as exc:
            self.redis_failed(exc)
