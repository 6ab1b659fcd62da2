"""The Faust application: topics, tables and agents of the LinkRift worker."""

from __future__ import annotations

import shutil

import aiokafka
import faust
from faust.transport.drivers import aiokafka as aiokafka_driver

from engine.config import Settings
from streams import web
from streams.agents import billing, clicks, links, maintenance, outbox, webhooks
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
    # Tables are rebuilt from their changelogs at every start instead of trusting local RocksDB:
    # after a SIGKILL, RocksDB's persisted changelog offsets were seen ahead of the changelog's
    # highwater (tansu), which Faust refuses with ConsistencyError. The changelog is the truth
    # (the click agent flushes it before a batch is acked), so a replay is always consistent.
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
    clicks.register(app, res)
    links.register(app, res)
    outbox.register(app, res)
    webhooks.register(app, res)
    billing.register(app, res)
    maintenance.register(app, res)
    web.register(app, res)
    return app, res
