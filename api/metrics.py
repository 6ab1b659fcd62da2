"""Prometheus metrics of the api process (names are the dashboards' contract)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REDIRECT_LATENCY = Histogram(
    "linkrift_redirect_latency_seconds",
    "Time to answer a redirect, by outcome",
    ["outcome"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
LINK_CACHE = Counter("linkrift_link_cache_total", "Link lookups by tier", ["tier"])
CLICKS_PRODUCED = Counter("linkrift_clicks_produced_total", "Raw clicks acknowledged by the broker")
CLICKS_SPOOLED = Counter("linkrift_clicks_spooled_total", "Raw clicks written to the local spool")
CLICKS_REPLAYED = Counter("linkrift_clicks_replayed_total", "Spooled clicks replayed to the broker")
SPOOL_DEPTH = Gauge(
    "linkrift_click_spool_depth", "Clicks journaled by this process and not yet acknowledged by the broker"
)
NOT_FOUND = Counter("linkrift_redirect_not_found_total", "Redirects for unknown codes")
RATE_LIMITED = Counter("linkrift_rate_limited_total", "Requests refused by a per-IP limit", ["endpoint"])
BACKEND_FALLBACK = Counter(
    "linkrift_backend_fallback_total", "Requests served despite a failed backend", ["backend"]
)
