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
    "linkrift_consumer_lag",
    "Messages behind the log end per partition: for clicks.raw, not yet in the sinks (measured on a "
    "timer from the broker's log end and the sink position); for Faust's topics, not yet committed",
    ["topic", "partition"],
)
RETRY_MAX_SECONDS = 5.0
# Every `until_written` target, so the write-failure alert has its series before the first failure.
WRITE_TARGETS = (
    "clickhouse",
    "postgres",
    "postgres_counters",
    "postgres_limits",
    "redis",
    "changelog",
    "link_caches",
    "billing_event",
)
for _target in WRITE_TARGETS:
    WRITE_RETRIES.labels(_target)

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


Job = Callable[[], Awaitable[None]]


def timer(app: faust.App, seconds: float, name: str) -> Callable[[Job], Job]:
    """`app.timer` with types: runs the decorated coroutine every `seconds` on the worker."""

    def register(job: Job) -> Job:
        app.timer(seconds, name=name)(job)
        return job

    return register


def task(app: faust.App) -> Callable[[Job], Job]:
    """`app.task` with types: runs the decorated coroutine once when the worker starts."""

    def register(job: Job) -> Job:
        app.task(job)
        return job

    return register


def on_shutdown(app: faust.App) -> Callable[[Job], Job]:
    """Runs the decorated coroutine when the worker is about to shut down (before its services stop)."""

    def register(job: Job) -> Job:
        async def handler(sender: Any, *args: Any, **kwargs: Any) -> None:
            await job()

        # mode's SignalHandlerT (a mypy_extensions.NamedArg with a string type) matches no function
        # mypy can be given; the handler accepts what mode passes (sender, *args, signal=…, **kwargs).
        app.on_before_shutdown.connect(handler)  # type: ignore[arg-type]
        return job

    return register


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


async def until_written(
    target: str, write: Callable[[], Awaitable[T]], describe: Callable[[], str] | None = None
) -> T:
    """`write()`, retried with backoff (0.2 s doubling to 5 s) until it succeeds.

    Faust acknowledges an event when the agent moves past it, also when the agent raised, so an
    agent that let a write fail would lose that event's effect. Retrying instead holds back the
    event's partition (back-pressure) until the store is back; the writes are idempotent, so one
    that failed halfway is simply done again. `describe` names what is being written (the
    batch's clicks and their ids) on the first failure's log line."""
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
                "write failed, retrying target=%s attempt=%d in=%.1fs error=%r%s",
                target, failures, delay, exc,
                f" {describe()}" if describe is not None and failures == 1 else "",
                exc_info=failures == 1,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
