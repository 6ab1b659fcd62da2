"""Kafka topic administration shared by the CLI, the worker and the tests."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


async def ensure_topics(
    bootstrap: str, topics: Mapping[str, int], configs: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """Create each topic with the given partition count (replication 1) unless it already exists;
    `configs` gives topic settings by name (e.g. cleanup.policy=compact for a changelog)."""
    if not topics:
        return
    configs = configs or {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        new = [
            NewTopic(name, num_partitions=n, replication_factor=1, topic_configs=dict(configs.get(name, {})))
            for name, n in topics.items()
        ]
        try:
            response = await admin.create_topics(new)
        except TopicAlreadyExistsError:
            return
        for name, code, *rest in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                message = rest[0] if rest else ""
                raise KafkaError(f"CreateTopics {name}: error {code} {message}")
            log.debug("topic_ensured topic=%s partitions=%d created=%s", name, topics[name], code == 0)
    finally:
        await admin.close()
