"""Kafka topic administration shared by the CLI, the worker and the tests."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from io import BytesIO
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import CoordinationType
from aiokafka.errors import (
    IncompatibleBrokerVersion,
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
)
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.commit import OffsetFetchRequest
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

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


# --- topic identity ---------------------------------------------------------------------------
# A topic that is deleted and created again (an operator, a new cluster, a broker with memory
# storage restarting) starts its offsets at 0 again: offsets remembered from before mean nothing
# there. Kafka (2.8+) and tansu give every topic a random id at creation, returned by Metadata
# v10+; aiokafka only speaks Metadata up to v5, so the request is declared here.


class _Uuid(AbstractType[bytes]):  # type: ignore[misc]
    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        return data.read(16)


class _MetadataResponseV10(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", CompactArray(
            ("node_id", Int32), ("host", CompactString("utf-8")), ("port", Int32),
            ("rack", CompactString("utf-8")), ("tags", TaggedFields),
        )),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", CompactArray(
            ("error_code", Int16), ("name", CompactString("utf-8")), ("topic_id", _Uuid),
            ("is_internal", Boolean),
            ("partitions", CompactArray(
                ("error_code", Int16), ("partition_index", Int32), ("leader_id", Int32),
                ("leader_epoch", Int32), ("replica_nodes", CompactArray(Int32)),
                ("isr_nodes", CompactArray(Int32)), ("offline_replicas", CompactArray(Int32)),
                ("tags", TaggedFields),
            )),
            ("topic_authorized_operations", Int32), ("tags", TaggedFields),
        )),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )  # fmt: skip


class _MetadataRequestV10(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = _MetadataResponseV10
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class _TopicIdRequest(Request[_MetadataRequestV10]):  # type: ignore[misc]
    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[_MetadataRequestV10]) -> _MetadataRequestV10:
        return request_struct_class([(bytes(16), t, {}) for t in self.topics], False, False, False, {})


_NO_ID = bytes(16)


class TopicIds:
    """Asks a broker for the ids of topics (one Metadata v10 request; never creates a topic).

    `get` answers {topic: id as 32 hex digits}, leaving out topics that do not exist (or a broker
    without topic ids). One long-lived connection: the click consumer asks before every batch."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.client: AIOKafkaClient | None = None  # created on the event loop, at first use
        self.partitions: dict[str, int] = {}  # partition count per topic, from `get`
        # False once the broker turned out not to know Metadata v10 (Kafka < 2.8): no ids at all.
        self.supported = True

    async def _client(self) -> AIOKafkaClient:
        client = self.client
        if client is None:
            client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            try:
                await client.bootstrap()
            except BaseException:
                await client.close()
                raise
            self.client = client
        return client

    async def committed(self, group: str, topic: str, partitions: int) -> dict[int, tuple[int, str]]:
        """The group's committed (offset, metadata) per partition of `topic` that has one.
        (OffsetFetch naming the partitions: aiokafka's admin asks for all of a group's offsets,
        whose answer tansu encodes in a form aiokafka cannot read.)"""
        client = await self._client()
        node = await client.coordinator_lookup(CoordinationType.GROUP, group)
        response: Any = await client.send(node, OffsetFetchRequest(group, [(topic, list(range(partitions)))]))
        out: dict[int, tuple[int, str]] = {}
        for name, parts in response.topics:
            for partition, offset, metadata, error, *_ in parts:
                if name == topic and error == 0 and offset >= 0:
                    out[partition] = (offset, metadata or "")
        return out

    async def get(self, topics: list[str]) -> dict[str, str]:
        client = await self._client()
        node = client.get_random_node()
        if node is None:
            await client.force_metadata_update()
            node = client.get_random_node()
            if node is None:
                raise KafkaConnectionError("no broker to ask for topic ids")
        if not self.supported:
            return {}
        try:
            response: Any = await client.send(node, _TopicIdRequest(topics))
        except (IncompatibleBrokerVersion, NotImplementedError):
            log.warning("the broker gives no topic ids (Metadata v10+): re-created topics go unnoticed")
            self.supported = False
            return {}
        for error, name, _, _, parts, *_ in response.topics:
            if error == 0:
                self.partitions[name] = len(parts)
        return {
            name: topic_id.hex()
            for error, name, topic_id, *_ in response.topics
            if error == 0 and topic_id != _NO_ID
        }

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
