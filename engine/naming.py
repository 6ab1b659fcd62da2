"""Names shared across processes: Kafka topics, Redis keys, the click state's key prefixes,
ClickHouse tables.

Every topic name and key format lives here and nowhere else. Topics and Redis keys carry the
settings' namespace so that tests (and several deployments on one cluster) never collide; the
click state's keys need none (each partition's store is private to its worker).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    namespace: str

    @property
    def clicks_raw(self) -> str:
        return f"{self.namespace}.clicks.raw"

    @property
    def clicks_state(self) -> str:
        """Compacted changelog of the click consumer's per-partition state (streams.click_state)."""
        return f"{self.namespace}.clicks.state-changelog"

    @property
    def clicks_group(self) -> str:
        """Consumer group of the worker's click consumer; the api's journal keeps a click until
        this group has committed past it."""
        return f"{self.namespace}-clicks"

    @property
    def links_changes(self) -> str:
        return f"{self.namespace}.links.changes"

    @property
    def billing_events(self) -> str:
        return f"{self.namespace}.billing.events"

    @property
    def webhooks_deliveries(self) -> str:
        return f"{self.namespace}.webhooks.deliveries"

    @property
    def webhooks_dead(self) -> str:
        return f"{self.namespace}.webhooks.dead"


# Key prefixes in a partition's click state (streams/click_state.py: RocksDB, changelogged to
# Topics.clicks_state), written by the click consumer; the partition is implicit.
STATE_STATS = "s:"  # s:{link_id} -> LinkStats dict
STATE_VISITOR = "v:"  # v:{link_id}:{visitor_id} -> offset of the visitor's first click
STATE_EVENT = "e:"  # e:{link_id}:{event_id} -> [offset, ts] of the first copy of a click
STATE_WORKSPACE = "w:"  # w:{workspace_id} -> {"count", "offset"}: the workspace's share of this partition
STATE_EXPIRY = "x:"  # x:{minute}:{e-key} -> b"": local only, orders event ids by time for pruning
STATE_PROGRESS = "p"  # last clicks.raw position applied to the state
STATE_SUNK = "k"  # last clicks.raw position ClickHouse and PostgreSQL are known to have
# {"topic": clicks.raw topic id, "epoch": n, "uncertain": [[lo, hi], ...]}: the incarnation of
# clicks.raw the positions are in, and the position ranges applied to the state but maybe not
# sunk when an earlier incarnation was lost.
STATE_INCARNATION = "i"


@dataclass(frozen=True)
class RedisKeys:
    """Redis key formats from the schema spec, prefixed by namespace."""

    namespace: str

    def _k(self, suffix: str) -> str:
        return f"{self.namespace}:{suffix}"

    def link(self, short_code: str, domain: str = "") -> str:
        # Codes are unique per domain, so the domain is part of the key (spec: link:{short_code}).
        return self._k(f"link:{domain}/{short_code}" if domain else f"link:{short_code}")

    def link_rules(self, short_code: str, domain: str = "") -> str:
        return self._k(f"link:rules:{domain}/{short_code}" if domain else f"link:rules:{short_code}")

    def link_admitted(self, link_id: str) -> str:
        """Atomic admission counter for links with max_clicks."""
        return self._k(f"link:admitted:{link_id}")

    def ab_observed(self, link_id: str) -> str:
        """Hash of visits per A/B variant the worker observed: field `{rule_id}:{variant}` → count."""
        return self._k(f"ab:observed:{link_id}")

    def realtime_link(self, link_id: str) -> str:
        return self._k(f"clicks:realtime:{link_id}")

    def realtime_unique(self, link_id: str) -> str:
        return self._k(f"clicks:realtime:unique:{link_id}")

    def realtime_workspace(self, workspace_id: str) -> str:
        return self._k(f"clicks:realtime:total:{workspace_id}")

    def session(self, refresh_token_hash: str) -> str:
        return self._k(f"session:{refresh_token_hash}")

    def user_sessions(self, user_id: str) -> str:
        return self._k(f"user:sessions:{user_id}")

    def rate_ip(self, ip: str, endpoint: str) -> str:
        return self._k(f"rate:{ip}:{endpoint}")

    def rate_api(self, key_prefix: str) -> str:
        return self._k(f"rate:api:{key_prefix}")

    @property
    def link_invalidations(self) -> str:
        """Pub/sub channel announcing link cache invalidations to every api replica."""
        return self._k("links:invalidate")

    @property
    def click_stream(self) -> str:
        """Pub/sub channel carrying every enriched click (fire and forget; SSE reads click_feed)."""
        return self._k("clicks:live")

    @property
    def feed_offsets(self) -> str:
        """Hash source partition -> last clicks.raw offset published to the live stream and feeds."""
        return self._k("clicks:feed_offsets")

    def click_feed(self, workspace_id: str) -> str:
        """Capped Redis Stream of one workspace's enriched clicks: the SSE feed and its replay buffer."""
        return self._k(f"clicks:feed:{workspace_id}")

    def webhook_click_cursor(self, workspace_id: str, event_type: str = "link.clicked") -> str:
        """Last click_feed entry id the webhook click batcher has looked at for `event_type`
        (`link.clicked`, `qr.scanned`, `bio.clicked`); each event moves its own cursor."""
        if event_type == "link.clicked":
            return self._k(f"webhooks:click_cursor:{workspace_id}")
        return self._k(f"webhooks:click_cursor:{event_type}:{workspace_id}")


REALTIME_TTL_SECONDS = 86400
# Approximate length cap (XADD MAXLEN ~) of each workspace's click stream, i.e. how far back an
# SSE client can resume with Last-Event-ID.
CLICK_STREAM_MAXLEN = 10_000

CH_CLICKS = "clicks_analytics"

# Header carrying the shared secret on api → worker internal calls (embedded chDB analytics).
INTERNAL_TOKEN_HEADER = "X-LinkRift-Internal-Token"  # noqa: S105 - a header name, not a secret
CH_DAILY = "click_aggregates_daily"
# Rollups of ClickHouse migration 000004 (the web app's analytics page, engine/analytics/queries.py).
CH_COUNTS_HOURLY = "click_counts_hourly"
CH_VISITOR_HOURS = "link_visitor_hours"
# Rollups of ClickHouse migration 000005 (the A/B section and whole days of the page's breakdowns).
CH_VARIANT_VISITOR_HOURS = "link_variant_visitor_hours"
CH_COUNTS_DAILY = "click_counts_daily"
