"""Pieces the agents share: raw-bytes topics and JSON decoding of their values."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import faust
import orjson

log = logging.getLogger(__name__)


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic whose keys and values reach the agent as the bytes on the wire."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


async def json_values(
    stream: faust.StreamT[bytes], what: str, logger: logging.Logger = log
) -> AsyncIterator[Any]:
    """Each value of `stream` decoded from JSON; a malformed one is logged ("dropping malformed <what>") and skipped."""
    async for value in stream:
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            logger.warning("dropping malformed %s", what)
            continue
        yield decoded
