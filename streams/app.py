"""The worker's Faust application: its agents and timers (link changes, outbox relay, webhooks,
billing, maintenance) and the batch click consumer it hosts (streams/agents/click_consumer.py), whose
per-partition state (streams/click_state.py) lives outside Faust."""

from __future__ import annotations

import shutil

import aiokafka
import faust
from faust.transport.drivers import aiokafka as aiokafka_driver

from engine.config import Settings
from streams import web
from streams.agents import billing, click_consumer, links, maintenance, outbox, webhooks
from streams.agents.common import (
    FETCH_MAX_WAIT_MS,
    HEARTBEAT_INTERVAL_SECONDS,
    REBALANCE_TIMEOUT_SECONDS,
    SESSION_TIMEOUT_SECONDS,
)
from streams.resources import WorkerResources


class _ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: aiokafka_driver.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust fixes fetch_max_wait_ms at 1500 (see FETCH_MAX_WAIT_MS).
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; Faust offers no setting.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(aiokafka_driver.Transport):
    Consumer = _Consumer


class WorkerApp(faust.App):
    """faust.App whose consumer waits at most FETCH_MAX_WAIT_MS per fetch."""

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)


def create_app(settings: Settings) -> tuple[faust.App, WorkerResources]:
    res = WorkerResources(settings)
    datadir = (settings.data_dir / "worker").resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)
    # The worker defines no Faust tables (the click state is kept in `<data_dir>/click_state`, see
    # streams/click_state.py), so Faust's own data directory holds nothing worth keeping: it is
    # wiped at every start, and nothing an older worker left there (Faust tables) is ever read.
    shutil.rmtree(datadir, ignore_errors=True)
    app = WorkerApp(
        f"{settings.namespace}-worker",
        broker=settings.kafka_broker,
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        web_enabled=True,
        web_host=settings.worker_host,
        web_port=settings.worker_port,
        web_bind=settings.worker_host,
        broker_session_timeout=SESSION_TIMEOUT_SECONDS,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_SECONDS,
        broker_rebalance_timeout=REBALANCE_TIMEOUT_SECONDS,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        autodiscover=False,
        table_standby_replicas=0,
    )
    click_parts = click_consumer.register(app, res)
    links.register(app, res)
    outbox.register(app, res)
    webhooks.register(app, res)
    billing.register(app, res)
    maintenance.register(app, res)
    web.register(app, res, click_parts["consumer"])
    return app, res
