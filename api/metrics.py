"""Prometheus metrics of the api process (names are the dashboards' and alerts' contract).

Every label takes values from a fixed set (route templates, status classes, outcomes, tiers,
backends), never ids, codes, URLs or addresses. Series an alert or a dashboard ratio depends on are
created at zero at import, so they exist from the first scrape, not from their first event.
The redirect definitions live here so any redirect front end (aiohttp or not) can use them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# ----------------------------------------------------------------------------- redirects
REDIRECT_LATENCY = Histogram(
    "linkrift_redirect_latency_seconds",
    "Time to answer a redirect, by outcome",
    ["outcome"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
# What a redirect can answer (the `outcome` label); "error" is the only server-side failure.
REDIRECT_OUTCOMES = (
    "redirect",
    "not_found",
    "expired",
    "exhausted",
    "password",
    "blocked",
    "rate_limited",
    "home",
    "error",
)
# The redirect latency objective the SLO alerts measure (a bucket boundary above).
REDIRECT_SLO_SECONDS = 0.025
LINK_CACHE = Counter(
    "linkrift_link_cache_total",
    "Link lookups by the tier that answered (lru and redis are cache hits)",
    ["tier"],
)
LINK_CACHE_TIERS = ("lru", "redis", "postgres", "miss", "stale")
NOT_FOUND = Counter("linkrift_redirect_not_found_total", "Redirects for unknown codes")
RATE_LIMITED = Counter("linkrift_rate_limited_total", "Requests refused by a per-IP limit", ["endpoint"])
BACKEND_FALLBACK = Counter(
    "linkrift_backend_fallback_total", "Requests served despite a failed backend", ["backend"]
)

# -------------------------------------------------------------------------- click producer
CLICKS_PRODUCED = Counter("linkrift_clicks_produced_total", "Raw clicks acknowledged by the broker")
CLICKS_SPOOLED = Counter("linkrift_clicks_spooled_total", "Raw clicks written to the local spool")
CLICKS_REPLAYED = Counter("linkrift_clicks_replayed_total", "Spooled clicks replayed to the broker")
SPOOL_DEPTH = Gauge(
    "linkrift_click_spool_depth", "Clicks journaled by this process and not yet acknowledged by the broker"
)

# ------------------------------------------------------------------------- RED per route
HTTP_REQUESTS = Counter(
    "linkrift_http_requests_total",
    "HTTP requests answered, by route template, method and status class",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "linkrift_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
# A request that matched no route (aiohttp's 404) is labelled with this instead of its path.
UNMATCHED_ROUTE = "unmatched"

# ------------------------------------------------------------------------ backends, runtime
BACKENDS = ("postgres", "redis", "clickhouse", "kafka_producer")
BACKEND_LATENCY = Histogram(
    "linkrift_backend_latency_seconds",
    "Latency of backend calls: the periodic probe (postgres, redis, clickhouse) and click produce requests",
    ["backend"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BACKEND_ERRORS = Counter("linkrift_backend_errors_total", "Failed backend calls", ["backend"])
BACKEND_UP = Gauge(
    "linkrift_backend_up", "Whether the backend answered the last probe (1) or not (0)", ["backend"]
)
DB_POOL_SIZE = Gauge("linkrift_db_pool_connections", "PostgreSQL pool connections open")
DB_POOL_IN_USE = Gauge("linkrift_db_pool_in_use", "PostgreSQL pool connections checked out")
DB_POOL_MAX = Gauge("linkrift_db_pool_max", "PostgreSQL pool size limit")


def _init_series() -> None:
    for outcome in REDIRECT_OUTCOMES:
        REDIRECT_LATENCY.labels(outcome)
    for tier in LINK_CACHE_TIERS:
        LINK_CACHE.labels(tier)
    for backend in BACKENDS:
        BACKEND_LATENCY.labels(backend)
        BACKEND_ERRORS.labels(backend)
    for backend in ("redis", "postgres"):
        BACKEND_FALLBACK.labels(backend)


_init_series()


def status_class(status: int) -> str:
    return f"{min(max(status // 100, 1), 5)}xx"


_REQUEST_CHILDREN: dict[tuple[str, str, str], tuple[Counter, Histogram | None]] = {}
# Routes whose answers linkrift_redirect_latency_seconds already times (by outcome): counted in
# linkrift_http_requests_total, not timed twice (a histogram observation per redirect is not free).
REDIRECT_ROUTES = frozenset({"/{code}", "/"})


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request (RED) under its route template."""
    if method not in HTTP_METHODS:
        method = "other"
    key = (route, method, status_class(status))
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        latency = None if route in REDIRECT_ROUTES else HTTP_LATENCY.labels(route, method)
        children = _REQUEST_CHILDREN[key] = (HTTP_REQUESTS.labels(*key), latency)
        # The 5xx rate alert divides by all requests: have the 5xx series from the start.
        HTTP_REQUESTS.labels(route, method, "5xx")
    children[0].inc()
    if children[1] is not None:
        children[1].observe(seconds)
