"""Process-level observability shared by the api and the worker: request ids and the event-loop
lag probe (its histogram is defined once here, as both processes' code can share one process, as in
tests). Everything else the processes export lives in api.metrics and streams.metrics."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from contextvars import ContextVar

from prometheus_client import Histogram

REQUEST_ID_HEADER = "X-Request-ID"
# The request id of the request being handled (log lines pick it up; the click carries it).
REQUEST_ID: ContextVar[str] = ContextVar("linkrift_request_id", default="")
# A caller's id is kept when it is short and plain (what load balancers and tracers send: uuids,
# hex, base64url, dotted or dashed tokens); anything else is replaced by one of ours.
MAX_REQUEST_ID_LENGTH = 128
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")

LOOP_LAG_INTERVAL_SECONDS = 0.5
LOOP_LAG = Histogram(
    "linkrift_event_loop_lag_seconds",
    "How late the event loop ran a periodic timer",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)


def new_request_id() -> str:
    """32 hex characters, like uuid4().hex, several times cheaper (this runs on every request)."""
    return os.urandom(16).hex()


def accept_request_id(value: str | None) -> str:
    """The caller's X-Request-ID when it is acceptable, else a new id."""
    if value and _REQUEST_ID_RE.fullmatch(value):
        return value
    return new_request_id()


async def watch_loop_lag(
    observe: Callable[[float], None] = LOOP_LAG.observe, interval: float = LOOP_LAG_INTERVAL_SECONDS
) -> None:
    """Forever: sleep `interval` and report how much later than asked the loop woke us up
    (a blocked or saturated event loop shows here before anywhere else)."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - started - interval))
