"""Billing agents: apply Stripe events from `billing.events`, and the periodic usage job."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

import asyncpg
import faust

from engine.billing.events import apply_event
from engine.billing.gateway import StripeGateway, plans_by_price
from engine.billing.usage import run_usage_cycle
from engine.errors import ServiceUnavailable
from streams.agents.common import json_values, raw_topic, timer, until_written
from streams.resources import WorkerResources

log = logging.getLogger(__name__)


def register(app: faust.App, res: WorkerResources) -> None:
    settings = res.settings
    topic = raw_topic(app, res.topics.billing_events, settings.topic_partitions)
    prices = plans_by_price(settings)

    async def _apply(event: Mapping[str, Any]) -> bool:
        async with res.pg.acquire() as conn:
            return await apply_event(conn, event, prices)

    @app.agent(topic, name="billing_events")
    async def billing_events(stream: faust.StreamT[bytes]) -> None:
        await res.ensure_started()
        async for event in json_values(stream, "billing event", log):
            applied = await until_written("billing_event", partial(_apply, event))
            log.info("billing event id=%s type=%s applied=%s", event.get("id"), event.get("type"), applied)

    @timer(app, settings.billing_usage_interval_seconds, "billing_usage")
    async def usage() -> None:
        await res.ensure_started()
        gateway = StripeGateway(settings) if settings.stripe_secret_key else None
        try:
            await run_usage_cycle(res.pg, gateway)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ServiceUnavailable) as exc:
            log.warning("billing usage cycle failed error=%s", exc)
