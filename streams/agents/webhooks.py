"""Webhook agents: link changes and click batches become deliveries; deliveries become signed POSTs.

    links.changes ──► webhook_link_events ──► webhook_deliveries rows (PG) ──► webhooks.deliveries
    click_feed (Redis) ──► timer every N s ──┘                                        │
    webhooks.deliveries ──► webhook_deliveries agent: attempt now ◄──────────────────┘
    timer (1 s): attempt every due pending row (retries, and whatever a dead worker left)
    exhausted retries ──► webhooks.dead

PostgreSQL is the source of truth, so a lost Kafka message only delays a delivery to the next scan.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import asyncpg
import faust
import orjson
from aiokafka.errors import KafkaError

from engine.accounts.mailer import Mailer
from engine.auth.crypto import SecretBox
from engine.webhooks import repository
from engine.webhooks.clicks import batch_clicks
from engine.webhooks.delivery import DeliveryPolicy, WebhookDispatcher
from engine.webhooks.events import from_link_change
from streams.agents.common import until_written
from streams.resources import WorkerResources

log = logging.getLogger(__name__)
SCAN_BATCH = 100


def register(app: faust.App, res: WorkerResources) -> None:
    settings = res.settings
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    changes = app.topic(res.topics.links_changes, partitions=settings.topic_partitions, **raw)
    deliveries = app.topic(res.topics.webhooks_deliveries, partitions=settings.topic_partitions, **raw)
    dead = app.topic(res.topics.webhooks_dead, partitions=settings.topic_partitions, **raw)
    mailer = Mailer(settings.smtp_url, settings.smtp_from, settings.data_dir.resolve() / "outbox")
    state: dict[str, WebhookDispatcher] = {}

    async def on_dead(record: dict[str, Any]) -> None:
        await dead.send(key=str(record["webhook_id"]).encode(), value=orjson.dumps(record))

    async def on_disabled(webhook_id: str, workspace_id: str) -> None:
        async with res.pg.acquire() as conn:
            emails = await repository.admin_emails(conn, workspace_id)
            hook = await repository.get_webhook(conn, workspace_id, webhook_id)
        body = (
            f"The webhook {hook['url']} was disabled after {hook['failure_count']} consecutive failed deliveries.\n"
            "Fix the endpoint, then re-enable it (PATCH /api/v1/webhooks/{id} with is_active=true)."
        )
        for email in emails:
            await mailer.send(email, "LinkRift webhook disabled", body)

    async def dispatcher() -> WebhookDispatcher:
        await res.ensure_started()
        if "d" not in state:
            policy = DeliveryPolicy.from_settings(settings)
            state["d"] = WebhookDispatcher(
                res.pg, SecretBox(settings.secret_key), policy, on_dead=on_dead, on_disabled=on_disabled
            )
        return state["d"]

    async def announce(workspace_id: str, ids: list[str]) -> None:
        for delivery_id in ids:
            await deliveries.send(key=workspace_id.encode(), value=delivery_id.encode())

    @app.agent(changes, name="webhook_link_events")
    async def link_events(stream: faust.StreamT[bytes]) -> None:
        d = await dispatcher()
        async for value in stream:
            try:
                event = from_link_change(orjson.loads(value))
            except orjson.JSONDecodeError:
                continue
            if event is None:
                continue
            event_id, event_type, data = event
            workspace_id = str(data["workspace_id"])
            # Delivery rows are unique per (webhook, event): a retried publish creates none twice.
            ids = await until_written(
                "webhook_link_event", partial(d.publish, workspace_id, event_id, event_type, data)
            )
            await announce(workspace_id, ids)

    @app.agent(deliveries, name="webhook_deliveries")
    async def deliver(stream: faust.StreamT[bytes]) -> None:
        d = await dispatcher()
        async for batch in stream.take(SCAN_BATCH, within=0.5):
            await d.deliver_due(limit=len(batch), ids=[v.decode() for v in batch])

    @app.timer(1.0, name="webhook_retry_scan")
    async def retry_scan() -> None:
        d = await dispatcher()
        try:
            while await d.deliver_due(limit=SCAN_BATCH) == SCAN_BATCH:
                pass
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("webhook retry scan failed error=%s", exc)

    @app.timer(settings.webhook_click_batch_seconds, name="webhook_click_batches")
    async def click_batches() -> None:
        d = await dispatcher()
        try:
            await batch_clicks(d, res.redis, res.keys, settings.webhook_click_batch_size)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError) as exc:
            log.warning("webhook click batching failed error=%s", exc)

    @app.on_before_shutdown.connect
    async def _close(sender: object, **kwargs: object) -> None:
        if "d" in state:
            await state["d"].close()
