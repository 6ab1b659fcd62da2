"""The worker's Faust app: its click consumer does not hold fetches for Faust's fixed 1.5 s."""

from __future__ import annotations

from pathlib import Path

import aiokafka

from engine.config import Settings
from streams.app import FETCH_MAX_WAIT_MS, create_app


async def test_worker_consumer_waits_at_most_fetch_max_wait(tmp_path: Path) -> None:
    app, _ = create_app(Settings(data_dir=tmp_path, kafka_broker="kafka://127.0.0.1:9"))
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
    plain = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    try:
        # The attribute AIOKafkaConsumer.start() builds its fetcher from; were it renamed, the
        # override would silently set a dead attribute.
        assert vars(plain)["_fetch_max_wait_ms"] == 500
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500
    finally:
        await consumer.stop()
        await plain.stop()
