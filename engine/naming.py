"""Names shared across processes: Kafka topics, Faust tables, Redis keys, ClickHouse tables.

Every topic, table and key format lives here and nowhere else. All names carry the settings'
namespace so that tests (and several deployments on one cluster) never collide.
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
        """Compacted changelog of the click agent's per-partition tables (streams.click_state)."""
        return f"{self.namespace}.clicks.state-changelog"

    @property
    def clicks_enriched(self) -> str:
        return f"{self.namespace}.clicks.enriched"

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
