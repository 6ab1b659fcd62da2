"""Delivering webhooks: fan-out of events into delivery rows, signed POSTs, retries with backoff.

PostgreSQL is the queue: a delivery is a `webhook_deliveries` row, `pending` until it succeeds or
exhausts its retries (`dead`). Any process can run `deliver_due` (it leases rows with
FOR UPDATE SKIP LOCKED), so a restarted worker picks up whatever was pending.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import orjson

from engine.auth import webhook_signing
from engine.auth.crypto import SecretBox
from engine.config import Settings
from engine.errors import ValidationFailed
from engine.outbound import PublicOnlyResolver
from engine.webhooks import repository
from engine.webhooks.events import envelope
from engine.webhooks.targets import validate_target

log = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = 1024
JITTER = 0.2
USER_AGENT = "LinkRift-Webhooks/1"

DeadHandler = Callable[[dict[str, Any]], Awaitable[None]]
DisabledHandler = Callable[[str, str], Awaitable[None]]


def retry_delay(attempt: int, schedule: Sequence[float], rng: random.Random | None = None) -> float | None:
    """Seconds to wait after failed attempt number `attempt` (1-based), ±20 % jitter so that many
    failing deliveries do not retry in lockstep; None when the schedule is exhausted."""
    if attempt > len(schedule):
        return None
    base = schedule[attempt - 1]
    return base * (1 + (rng or random).uniform(-JITTER, JITTER))


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated v1 signatures, one per valid secret (two during a rotation's grace period)."""
    return " ".join(webhook_signing.sign(s, msg_id, timestamp, body) for s in secrets)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    status: int | None = None
    body: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    schedule: tuple[float, ...]
    timeout: float
    max_failures: int
    allow_private: bool
    lease_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            schedule=tuple(settings.webhook_retry_schedule),
            timeout=settings.webhook_timeout_seconds,
            max_failures=settings.webhook_max_failures,
            allow_private=settings.webhook_allow_private,
            lease_seconds=settings.webhook_lease_seconds,
        )


class WebhookDispatcher:
    """Fan-out (event → delivery rows) and delivery (rows → HTTP POSTs) over one PG pool."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        policy: DeliveryPolicy,
        *,
        on_dead: DeadHandler | None = None,
        on_disabled: DisabledHandler | None = None,
        cache_ttl: float = 10.0,
    ) -> None:
        self.pool = pool
        self.box = box
        self.policy = policy
        self.on_dead = on_dead
        self.on_disabled = on_disabled
        self.cache_ttl = cache_ttl
        self._hooks: dict[str, tuple[float, list[tuple[str, frozenset[str]]]]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            resolver = None if self.policy.allow_private else PublicOnlyResolver()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=resolver),
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def _subscribers(self, workspace_id: str, event_type: str) -> list[str]:
        cached = self._hooks.get(workspace_id)
        now = time.monotonic()
        if cached is None or cached[0] < now:
            async with self.pool.acquire() as conn:
                hooks = await repository.subscribed_webhooks(conn, workspace_id)
            cached = (now + self.cache_ttl, hooks)
            self._hooks[workspace_id] = cached
        return [hook_id for hook_id, events in cached[1] if event_type in events]

    def forget(self, workspace_id: str) -> None:
        self._hooks.pop(workspace_id, None)

    async def publish(
        self, workspace_id: str, event_id: str, event_type: str, data: dict[str, Any]
    ) -> list[str]:
        """Create one pending delivery per active webhook of the workspace subscribed to `event_type`."""
        hook_ids = await self._subscribers(workspace_id, event_type)
        if not hook_ids:
            return []
        async with self.pool.acquire() as conn:
            return await repository.enqueue(conn, hook_ids, event_id, event_type, envelope(event_type, data))

    async def deliver_due(self, limit: int = 50, ids: Sequence[str] | None = None) -> int:
        """Attempt up to `limit` due deliveries (only `ids` if given), concurrently; returns how many."""
        async with self.pool.acquire() as conn:
            rows = await repository.claim_due(conn, limit, self.policy.lease_seconds, ids)
            if not rows:
                return 0
            targets = await repository.load_targets(conn, self.box, [str(r["webhook_id"]) for r in rows])
        await asyncio.gather(*(self._attempt(row, targets[str(row["webhook_id"])]) for row in rows))
        return len(rows)

    async def send(self, target: repository.Target, msg_id: str, payload: dict[str, Any]) -> AttemptResult:
        """One signed POST; never raises for network or receiver failures."""
        body = orjson.dumps(payload)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(target.secrets, msg_id, timestamp, body),
        }
        try:
            # DNS may have changed since the hook was saved: re-check the target before each POST.
            await validate_target(target.url, allow_private=self.policy.allow_private)
            async with self._client().post(
                target.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                text = (await resp.content.read(RESPONSE_BODY_LIMIT)).decode("utf-8", "replace")
                ok = 200 <= resp.status < 300
                return AttemptResult(ok, resp.status, text, None if ok else f"HTTP {resp.status}")
        except ValidationFailed as exc:
            return AttemptResult(False, error=exc.message)
        except TimeoutError:
            return AttemptResult(False, error=f"timed out after {self.policy.timeout:g}s")
        except aiohttp.ClientError as exc:
            return AttemptResult(False, error=f"{type(exc).__name__}: {exc}"[:RESPONSE_BODY_LIMIT])

    async def _attempt(self, row: asyncpg.Record, target: repository.Target) -> None:
        delivery_id, webhook_id = str(row["id"]), str(row["webhook_id"])
        result = await self.send(target, row["event_id"], row["payload"])
        async with self.pool.acquire() as conn:
            if result.ok:
                await repository.record_success(
                    conn, delivery_id, webhook_id, result.status or 0, result.body or ""
                )
                return
            retry_in = retry_delay(row["attempt"], self.policy.schedule)
            disabled = await repository.record_failure(
                conn,
                delivery_id,
                webhook_id,
                status=result.status,
                body=result.body,
                error=result.error,
                retry_in=retry_in,
                max_failures=self.policy.max_failures,
            )
        log.info(
            "webhook delivery failed delivery=%s webhook=%s attempt=%s error=%s retry_in=%s",
            delivery_id,
            webhook_id,
            row["attempt"],
            result.error,
            retry_in,
        )
        if retry_in is None and self.on_dead is not None:
            await self.on_dead(
                {
                    "delivery_id": delivery_id,
                    "webhook_id": webhook_id,
                    "workspace_id": target.workspace_id,
                    "event_id": row["event_id"],
                    "event_type": row["event_type"],
                    "attempts": row["attempt"],
                    "error": result.error,
                }
            )
        if disabled:
            self.forget(target.workspace_id)
            log.warning("webhook disabled after consecutive failures webhook=%s", webhook_id)
            if self.on_disabled is not None:
                await self.on_disabled(webhook_id, target.workspace_id)
