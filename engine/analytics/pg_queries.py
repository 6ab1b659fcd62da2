"""PostgreSQL analytics over the partitioned `clicks` table: the summary served when ClickHouse is down.

The spec's GetLinkAnalyticsSummary, corrected. Its version grouped clicks by (visitor, device,
country) first and then aggregated the groups, which broke in four ways:
  * COUNT(*) and the device FILTERs counted groups, not clicks (a visitor's 5 clicks counted 1);
  * jsonb_object_agg(country_code, cnt) got one key per group, so a country appeared once per
    visitor and the last group silently won: the value was one visitor's count, not the country's;
  * jsonb_object_agg raises "field name must not be null" as soon as one click has no country;
  * `clicked_at <= $3` made adjacent windows count a click twice; and there was no workspace filter.
Here totals are taken over the clicks themselves and the country map is built from its own
GROUP BY country, with NULL folded into "" (the "unknown" key, as in ClickHouse).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

_SUMMARY = """
WITH window_clicks AS (
    SELECT visitor_id, device_type, country_code, is_bot, is_preview
    FROM clicks
    WHERE workspace_id = $1
      AND ($2::uuid IS NULL OR link_id = $2::uuid)
      AND clicked_at >= $3 AND clicked_at < $4
),
by_country AS (
    SELECT COALESCE(country_code, '') AS country, COUNT(*) AS clicks
    FROM window_clicks
    WHERE NOT is_bot AND NOT is_preview
    GROUP BY 1
)
SELECT
    COUNT(*) AS total_clicks,
    COUNT(DISTINCT visitor_id) FILTER (WHERE visitor_id <> '') AS unique_visitors,
    COUNT(*) FILTER (WHERE NOT is_bot AND NOT is_preview) AS human_clicks,
    COUNT(*) FILTER (WHERE is_bot) AS bot_clicks,
    COUNT(*) FILTER (WHERE is_preview) AS preview_clicks,
    COUNT(*) FILTER (WHERE device_type = 'mobile' AND NOT is_bot AND NOT is_preview) AS mobile_clicks,
    COUNT(*) FILTER (WHERE device_type = 'desktop' AND NOT is_bot AND NOT is_preview) AS desktop_clicks,
    (SELECT COALESCE(jsonb_object_agg(country, clicks), '{}'::jsonb) FROM by_country) AS clicks_by_country
FROM window_clicks
"""


async def link_analytics_summary(
    conn: asyncpg.Connection,
    *,
    workspace_id: str,
    link_id: str | None,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """Totals and human clicks by country in [start, end), for one link or (link_id None) a workspace."""
    row = await conn.fetchrow(_SUMMARY, workspace_id, link_id, start, end)
    assert row is not None  # an aggregate without GROUP BY always returns one row
    by_country = row["clicks_by_country"]
    if isinstance(by_country, str | bytes):
        by_country = orjson.loads(by_country)
    return {
        "clicks": int(row["total_clicks"]),
        "unique_visitors": int(row["unique_visitors"]),
        "human_clicks": int(row["human_clicks"]),
        "bot_clicks": int(row["bot_clicks"]),
        "preview_clicks": int(row["preview_clicks"]),
        "mobile_clicks": int(row["mobile_clicks"]),
        "desktop_clicks": int(row["desktop_clicks"]),
        "clicks_by_country": {str(k): int(v) for k, v in dict(by_country).items()},
    }
