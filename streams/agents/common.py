"""Pieces the agents share: raw-bytes topics, JSON decoding of their values, and retrying a
write until it succeeds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import faust
import orjson
from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)
T = TypeVar("T")

WRITE_RETRIES = Counter(
    "linkrift_agent_write_retries_total", "Agent writes retried after an error", ["target"]
)
CONSUMER_LAG = Gauge(
    "linkrift_consumer_lag", "Messages not yet committed per partition", ["topic", "partition"]
)
RETRY_MAX_SECONDS = 5.0

# Consumer-group timing for both of the worker's consumers (Faust's and the click consumer).
# Tuned for fast failover: a killed worker's partitions move after ~6 s instead of Kafka's
# 45 s default, and a restarted one rejoins in a few seconds (tansu and Apache Kafka alike).
SESSION_TIMEOUT_SECONDS = 3.0
HEARTBEAT_INTERVAL_SECONDS = 0.5
REBALANCE_TIMEOUT_SECONDS = 5.0
# Apache Kafka answers a fetch as soon as data arrives, but tansu holds it for the wait (measured:
# one click per 50 ms reached a consumer after 381 ms p50 / 750 ms max at Faust's fixed 1500 ms,
# 32 / 50 ms at 100), which was most of the click → live counter delay. An idle worker then polls
# ten times a second per broker.
FETCH_MAX_WAIT_MS = 100


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic whose keys and values reach the agent as the bytes on the wire."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


async def json_values(
    stream: faust.StreamT[bytes], what: str, logger: logging.Logger = log
) -> AsyncIterator[Any]:
    """Each value of `stream` decoded from JSON; a malformed one is logged ("dropping malformed <what>") and skipped."""
    async for value in stream:
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            logger.warning("dropping malformed %s", what)
            continue
        yield decoded


async def until_written(target: str, write: Callable[[], Awaitable[T]]) -> T:
    """`write()`, retried with backoff (0.2 s doubling to 5 s) until it succeeds.

    Faust acknowledges an event when the agent moves past it, also when the agent raised, so an
    agent that let a write fail would lose that event's effect. Retrying instead holds back the
    event's partition (back-pressure) until the store is back; the writes are idempotent, so one
    that failed halfway is simply done again."""
    delay = 0.2
    failures = 0
    while True:
        try:
            return await write()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            WRITE_RETRIES.labels(target).inc()
            log.warning(
                "write failed, retrying target=%s attempt=%d in=%.1fs error=%r",
                target, failures, delay, exc, exc_info=failures == 1,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
