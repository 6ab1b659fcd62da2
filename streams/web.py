"""The worker's own HTTP endpoints (Faust web, loopback): metrics, health and the internal
analytics RPC.

- `/livez`: the process and its event loop answer.
- `/readyz`: the click consumer runs and makes progress: 503 when it is not running (starting,
  restarting after an error) or when clicks wait and the sinks finished nothing for
  LINKRIFT_WORKER_STALL_SECONDS (a stalled sink, a lock, a dead ClickHouse).

With embedded chDB only one process may open the ClickHouse data directory, and the worker must
write to it; so in `linkrift dev` the api runs its (named, validated) analytics queries here.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.analytics.queries import run_named
from engine.errors import LinkRiftError
from engine.naming import INTERNAL_TOKEN_HEADER
from streams.resources import WorkerResources

if TYPE_CHECKING:
    from streams.agents.click_consumer import ClickConsumer


def register(app: faust.App, res: WorkerResources, clicks: ClickConsumer) -> None:
    @app.page("/livez")
    class Livez(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            body = {
                "status": "ok" if clicks.ready else "unavailable",
                "click_consumer": "running" if clicks.running else "stopped",
                "click_lag": clicks.lag_total,
                "seconds_since_progress": round(time.monotonic() - clicks.last_progress, 1),
            }
            return self.json(body, status=200 if clicks.ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/internal/analytics")
    class Analytics(View):
        async def post(self, request: Request) -> Response:
            token = request.headers.get(INTERNAL_TOKEN_HEADER, "")
            if not hmac.compare_digest(token.encode(), res.settings.internal_token.encode()):
                return self.json(
                    {"error": {"code": "unauthorized", "message": "bad internal token"}}, status=401
                )
            try:
                body: dict[str, Any] = orjson.loads(await self.read_request_content(request))
                await res.ensure_started()
                result = await res.clickhouse.run(
                    run_named, str(body.get("query")), dict(body.get("params") or {})
                )
            except LinkRiftError as exc:
                return self.json(exc.to_dict(), status=exc.status)
            except orjson.JSONDecodeError:
                return self.json(
                    {"error": {"code": "bad_request", "message": "body must be JSON"}}, status=400
                )
            return self.json(result)
