"""Prometheus metrics of the worker that are not tied to one agent: runtime, backlogs, health.

Agents keep their own metrics next to their code (streams.agents.*); as in api.metrics, every
label comes from a fixed set and series alerts depend on exist from the first scrape.
"""

from __future__ import annotations

import time

from prometheus_client import Gauge

OUTBOX_BACKLOG = Gauge("linkrift_outbox_backlog", "Outbox rows not yet published to Kafka")
OUTBOX_OLDEST_SECONDS = Gauge(
    "linkrift_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 when none)"
)
WEBHOOK_BACKLOG = Gauge(
    "linkrift_webhook_backlog", "Webhook deliveries waiting for an attempt (pending or failed, not dead)"
)
CLICKHOUSE_LAST_WRITE = Gauge(
    "linkrift_clickhouse_last_write_timestamp_seconds",
    "Unix time of the last successful ClickHouse insert by this worker (process start before the first)",
)
WORKER_READY = Gauge(
    "linkrift_worker_ready",
    "1 while the click consumer runs and makes progress (or has nothing to do), else 0",
)
CLICK_LAG_TOTAL = Gauge(
    "linkrift_click_consumer_lag_total",
    "Clicks in this worker's clicks.raw partitions not yet in the sinks (sum over its partitions)",
)

CLICKHOUSE_LAST_WRITE.set(time.time())
