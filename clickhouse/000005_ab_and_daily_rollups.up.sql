-- More rollups for the web app's analytics page (engine/analytics/queries.py, docs/performance.md
-- "Web app"), exact like those of 000004 for any window of whole UTC hours:
--   * link_variant_visitor_hours: per (link, A/B rule, variant, visitor) the visitor's human
--     clicks per UTC hour (hours since the epoch -> clicks), a sumMap that a merge adds up. The
--     A/B results need each visitor's click count in the window (returning visitors = two clicks
--     or more): the sum of the visitor's counts of the window's hours, counted per visitor, never
--     summed across visitors, so exact across inserts and merges. Read with FINAL. The empty
--     visitor id keeps one row per variant: its clicks count, it is not a visitor (as the raw query).
--   * click_counts_daily: human clicks per (link, UTC day, breakdown dimension, value), the ten
--     dimensions of click_counts_hourly without '_flags' (~24x fewer rows). A window's whole UTC
--     days are read here, its first and last partial days from click_counts_hourly.
-- Both are filled from clicks_analytics directly (as 000004's): a retried insert that the raw
-- table deduplicates gives the same derived blocks, which their own windows deduplicate.
-- Backfills run only while their table is empty; apply with `linkrift migrate` before the workers
-- (the worker applies it at start, before its sink writes).
CREATE TABLE IF NOT EXISTS link_variant_visitor_hours (
    workspace_id UUID,
    link_id UUID,
    rule_id String,
    variant String,
    visitor_id String,
    hits SimpleAggregateFunction(sumMap, Tuple(Array(UInt32), Array(UInt64)))
)
ENGINE = AggregatingMergeTree
ORDER BY (workspace_id, link_id, rule_id, variant, visitor_id)
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO link_variant_visitor_hours
SELECT workspace_id, link_id, rule_id, variant, visitor_id,
       sumMap(([toUInt32(intDiv(toUnixTimestamp(clicked_at), 3600))], [toUInt64(1)])) AS hits
FROM clicks_analytics
WHERE variant != '' AND is_bot = 0 AND is_preview = 0
  AND (SELECT count() FROM link_variant_visitor_hours) = 0
GROUP BY workspace_id, link_id, rule_id, variant, visitor_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS clicks_to_variant_visitor_hours_mv
TO link_variant_visitor_hours
AS SELECT workspace_id, link_id, rule_id, variant, visitor_id,
          sumMap(([toUInt32(intDiv(toUnixTimestamp(clicked_at), 3600))], [toUInt64(1)])) AS hits
FROM clicks_analytics
WHERE variant != '' AND is_bot = 0 AND is_preview = 0
GROUP BY workspace_id, link_id, rule_id, variant, visitor_id;

CREATE TABLE IF NOT EXISTS click_counts_daily (
    workspace_id UUID,
    link_id UUID,
    dimension LowCardinality(String),
    day Date,
    value String,
    clicks UInt64
)
ENGINE = SummingMergeTree(clicks)
PARTITION BY toYYYYMM(day)
ORDER BY (workspace_id, link_id, dimension, day, value)
TTL day + INTERVAL 2 YEAR
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO click_counts_daily
SELECT workspace_id, link_id, d.1 AS dimension, toDate(clicked_at, 'UTC') AS day, d.2 AS value,
       count() AS clicks
FROM clicks_analytics
ARRAY JOIN [('country', toString(country_code)), ('region', region), ('city', city),
            ('device_type', toString(device_type)), ('browser', toString(browser)), ('os', toString(os)),
            ('referer_domain', toString(referer_domain)), ('utm_source', utm_source),
            ('utm_medium', utm_medium), ('utm_campaign', utm_campaign)] AS d
WHERE is_bot = 0 AND is_preview = 0 AND (SELECT count() FROM click_counts_daily) = 0
GROUP BY workspace_id, link_id, dimension, day, value;

CREATE MATERIALIZED VIEW IF NOT EXISTS clicks_to_counts_daily_mv
TO click_counts_daily
AS SELECT workspace_id, link_id, d.1 AS dimension, toDate(clicked_at, 'UTC') AS day, d.2 AS value,
          count() AS clicks
FROM clicks_analytics
ARRAY JOIN [('country', toString(country_code)), ('region', region), ('city', city),
            ('device_type', toString(device_type)), ('browser', toString(browser)), ('os', toString(os)),
            ('referer_domain', toString(referer_domain)), ('utm_source', utm_source),
            ('utm_medium', utm_medium), ('utm_campaign', utm_campaign)] AS d
WHERE is_bot = 0 AND is_preview = 0
GROUP BY workspace_id, link_id, dimension, day, value;
