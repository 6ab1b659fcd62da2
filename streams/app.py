"""The Faust application: topics, tables and agents of the LinkRift worker."""

from __future__ import annotations

import shutil

import aiokafka
import faust
from faust.transport.drivers import aiokafka as aiokafka_driver

from engine.config import Settings
from streams import web
from streams.agents import billing, clicks, links, maintenance, outbox, webhooks
from streams.resources import WorkerResources

# Tuned for fast failover: a killed worker's partitions move after ~6 s instead of Kafka's
# 45 s default, and a restarted one rejoins in a few seconds (tansu and Apache Kafka alike).
SESSION_TIMEOUT = 3.0
HEARTBEAT_INTERVAL = 0.5
REBALANCE_TIMEOUT = 5.0
# Faust fixes the consumer's fetch_max_wait_ms at 1500. Apache Kafka answers a fetch as soon as
# data arrives, but tansu holds it for the wait (measured: one click per 50 ms reached a consumer
# after 381 ms p50 / 750 ms max at 1500, 32 / 50 ms at 100), which was most of the click → live
# counter delay. An idle worker then polls ten times a second per broker.
FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: aiokafka_driver.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
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
        broker_session_timeout=SESSION_TIMEOUT,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL,
        broker_rebalance_timeout=REBALANCE_TIMEOUT,
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

    @app.on_partitions_revoked.connect
    async def _on_revoked(sender: object, *args: object, **kwargs: object) -> None:
        # Another worker may write these partitions next; re-read ClickHouse when they return.
        if res.started:
            res.ch_sink.forget_partitions()

    return app, res
