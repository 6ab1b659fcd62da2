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
from engine.webhooks.click_batches import batch_clicks
from engine.webhooks.delivery import DeliveryPolicy, WebhookDispatcher
from engine.webhooks.events import from_link_change
from streams.agents.common import json_values, on_shutdown, raw_topic, timer, until_written
from streams.resources import WorkerResources

log = logging.getLogger(__name__)
SCAN_BATCH = 100


class WebhookAgents:
    """The worker's webhook side. One dispatcher serves every agent and timer; it is created on
    first use, once the worker's resources (PostgreSQL pool) have started."""

    def __init__(self, app: faust.App, res: WorkerResources) -> None:
        self.res = res
        self.settings = settings = res.settings
        partitions = settings.topic_partitions
        self.changes = raw_topic(app, res.topics.links_changes, partitions)
        self.deliveries = raw_topic(app, res.topics.webhooks_deliveries, partitions)
        self.dead = raw_topic(app, res.topics.webhooks_dead, partitions)
        self.mailer = Mailer(settings.smtp_url, settings.smtp_from, settings.data_dir.resolve() / "outbox")
        self._dispatcher: WebhookDispatcher | None = None

    async def dispatcher(self) -> WebhookDispatcher:
        await self.res.ensure_started()
        if self._dispatcher is None:
            self._dispatcher = WebhookDispatcher(
                self.res.pg,
                SecretBox(self.settings.secret_key),
                DeliveryPolicy.from_settings(self.settings),
                on_dead=self.on_dead,
                on_disabled=self.on_disabled,
            )
        return self._dispatcher

    async def on_dead(self, record: dict[str, Any]) -> None:
        await self.dead.send(key=str(record["webhook_id"]).encode(), value=orjson.dumps(record))

    async def on_disabled(self, webhook_id: str, workspace_id: str) -> None:
        async with self.res.pg.acquire() as conn:
            emails = await repository.admin_emails(conn, workspace_id)
            hook = await repository.get_webhook(conn, workspace_id, webhook_id)
        body = (
            f"The webhook {hook['url']} was disabled after {hook['failure_count']} consecutive failed deliveries.\n"
            "Fix the endpoint, then re-enable it (PATCH /api/v1/webhooks/{id} with is_active=true)."
        )
        for email in emails:
            await self.mailer.send(email, "LinkRift webhook disabled", body)

    async def link_events(self, stream: faust.StreamT[bytes]) -> None:
        """links.changes → one delivery row per subscribed webhook, announced on webhooks.deliveries."""
        d = await self.dispatcher()
        async for change in json_values(stream, "link change", log):
            event = from_link_change(change)
            if event is None:
                continue
            event_id, event_type, data = event
            workspace_id = str(data["workspace_id"])
            # Delivery rows are unique per (webhook, event): a retried publish creates none twice.
            ids = await until_written(
                "webhook_link_event", partial(d.publish, workspace_id, event_id, event_type, data)
            )
            for delivery_id in ids:
                await self.deliveries.send(key=workspace_id.encode(), value=delivery_id.encode())

    async def deliver(self, stream: faust.StreamT[bytes]) -> None:
        """webhooks.deliveries → attempt those deliveries now."""
        d = await self.dispatcher()
        async for batch in stream.take(SCAN_BATCH, within=0.5):
            await d.deliver_due(limit=len(batch), ids=[v.decode() for v in batch])

    async def retry_scan(self) -> None:
        """Attempt every due pending delivery (retries, and whatever a dead worker left)."""
        d = await self.dispatcher()
        try:
            while await d.deliver_due(limit=SCAN_BATCH) == SCAN_BATCH:
                pass
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("webhook retry scan failed error=%s", exc)

    async def click_batches(self) -> None:
        """The click feed's new clicks → `link.clicked` deliveries, in batches."""
        d = await self.dispatcher()
        try:
            await batch_clicks(d, self.res.redis, self.res.keys, self.settings.webhook_click_batch_size)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError) as exc:
            log.warning("webhook click batching failed error=%s", exc)

    async def close(self) -> None:
        if self._dispatcher is not None:
            await self._dispatcher.close()


def register(app: faust.App, res: WorkerResources) -> WebhookAgents:
    hooks = WebhookAgents(app, res)
    app.agent(hooks.changes, name="webhook_link_events")(hooks.link_events)
    app.agent(hooks.deliveries, name="webhook_deliveries")(hooks.deliver)
    timer(app, 1.0, "webhook_retry_scan")(hooks.retry_scan)
    timer(app, res.settings.webhook_click_batch_seconds, "webhook_click_batches")(hooks.click_batches)
    on_shutdown(app)(hooks.close)
    return hooks
