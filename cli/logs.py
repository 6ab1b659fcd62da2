"""Structured logging for every LinkRift process: one line per record, `key=value` (kv) or JSON,
chosen by LINKRIFT_LOG_FORMAT for the api and the worker alike.

Every line has `ts` (ISO 8601 UTC with milliseconds, `2026-01-02T03:04:05.678Z`), `level`,
`logger` and `msg`; `request_id` when the record was logged while handling a request
(engine.observability.REQUEST_ID); `exc` with the traceback for an exception.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from engine.observability import REQUEST_ID


def timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds and the zone: `2026-01-02T03:04:05.678Z`."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RequestIdFilter(logging.Filter):
    """Puts the current request id on the record (`record.request_id`, "" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            data["request_id"] = request_id
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data).decode()


class KvFormatter(logging.Formatter):
    """`ts=… level=… logger=… msg=…` (the message keeps its own key=value pairs) and request_id."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"ts={timestamp(record.created)} level={record.levelname} logger={record.name} "
            f"msg={record.getMessage()}"
        )
        request_id = getattr(record, "request_id", "")
        if request_id:
            line += f" request_id={request_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "INFO", fmt: str = "kv") -> None:
    """Replace the root logger's handlers with one stderr handler in `fmt` (kv or json). The
    worker calls this instead of letting Faust (mode) configure logging, so both processes
    write the same format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KvFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Faust/mode INFO lines (rebalances, table recovery) are what operators need; aiokafka's are noise.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    # Libraries that add their own handlers (mode's "faust" loggers) would print lines twice or
    # in another format: their records go through the root handler only.
    for name in list(logging.Logger.manager.loggerDict):
        logger = logging.getLogger(name)
        if logger.handlers and name != "root":
            logger.handlers[:] = []
            logger.propagate = True
