-- Rollups for the web app's analytics page (engine/analytics/queries.py, `_rollup_overview`, docs/performance.md
-- "Web app"), both exact for any window of whole UTC hours:
--   * click_counts_hourly: clicks per (link, UTC hour, dimension, value). Dimension '_flags'
--     counts every click by its flags (value = is_bot || is_preview: '00' human, '10', '01',
--     '11'); the ten breakdown dimensions count human clicks, as the report does. Counts add up
--     exactly, so SummingMergeTree sums them (read with sum() and GROUP BY: rows of one key may
--     not be merged yet).
--   * link_visitor_hours: one row per (link, visitor) holding the set of UTC hours (hours since
--     the epoch) in which that visitor clicked the link, as a plain array (a merge takes the
--     union, groupUniqArrayArray; a SimpleAggregateFunction is read without deserialising a
--     state). Unique visitors of a window are the visitors whose set has an hour in it, and per
--     bucket the visitors with an hour in that bucket: counted per visitor, never summed across
--     batches, days or hours, so exact across inserts and merges. Read with FINAL (merges a
--     visitor's unmerged rows in key order). The visitor is the visitor_id string itself: the
--     same definition as the raw queries (distinct non-empty ids); an empty id is not a visitor.
-- The backfills below run only while their table is empty (an applied-again file adds nothing);
-- clicks inserted between a backfill and its view's creation would be missed, so in production
-- apply this with `linkrift migrate` before the workers (the worker applies it at start, before
-- its sink writes).
CREATE TABLE IF NOT EXISTS click_counts_hourly (
    workspace_id UUID,
    link_id UUID,
    dimension LowCardinality(String),
    hour DateTime('UTC'),
    value String,
    clicks UInt64
)
ENGINE = SummingMergeTree(clicks)
PARTITION BY toYYYYMM(hour)
ORDER BY (workspace_id, link_id, dimension, hour, value)
TTL hour + INTERVAL 2 YEAR
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO click_counts_hourly
SELECT workspace_id, link_id, d.1 AS dimension, toStartOfHour(clicked_at) AS hour, d.2 AS value,
       count() AS clicks
FROM clicks_analytics
ARRAY JOIN arrayConcat(
    [('_flags', concat(toString(is_bot), toString(is_preview)))],
    if(is_bot = 0 AND is_preview = 0,
       [('country', toString(country_code)), ('region', region), ('city', city),
        ('device_type', toString(device_type)), ('browser', toString(browser)), ('os', toString(os)),
        ('referer_domain', toString(referer_domain)), ('utm_source', utm_source),
        ('utm_medium', utm_medium), ('utm_campaign', utm_campaign)],
       [])) AS d
WHERE (SELECT count() FROM click_counts_hourly) = 0
GROUP BY workspace_id, link_id, dimension, hour, value;

CREATE MATERIALIZED VIEW IF NOT EXISTS clicks_to_counts_hourly_mv
TO click_counts_hourly
AS SELECT workspace_id, link_id, d.1 AS dimension, toStartOfHour(clicked_at) AS hour, d.2 AS value,
          count() AS clicks
FROM clicks_analytics
ARRAY JOIN arrayConcat(
    [('_flags', concat(toString(is_bot), toString(is_preview)))],
    if(is_bot = 0 AND is_preview = 0,
       [('country', toString(country_code)), ('region', region), ('city', city),
        ('device_type', toString(device_type)), ('browser', toString(browser)), ('os', toString(os)),
        ('referer_domain', toString(referer_domain)), ('utm_source', utm_source),
        ('utm_medium', utm_medium), ('utm_campaign', utm_campaign)],
       [])) AS d
GROUP BY workspace_id, link_id, dimension, hour, value;

CREATE TABLE IF NOT EXISTS link_visitor_hours (
    workspace_id UUID,
    link_id UUID,
    visitor_id String,
    hours SimpleAggregateFunction(groupUniqArrayArray, Array(UInt32))
)
ENGINE = AggregatingMergeTree
ORDER BY (workspace_id, link_id, visitor_id)
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO link_visitor_hours
SELECT workspace_id, link_id, visitor_id,
       groupUniqArray(toUInt32(intDiv(toUnixTimestamp(clicked_at), 3600))) AS hours
FROM clicks_analytics
WHERE visitor_id != '' AND (SELECT count() FROM link_visitor_hours) = 0
GROUP BY workspace_id, link_id, visitor_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS clicks_to_visitor_hours_mv
TO link_visitor_hours
AS SELECT workspace_id, link_id, visitor_id,
          groupUniqArray(toUInt32(intDiv(toUnixTimestamp(clicked_at), 3600))) AS hours
FROM clicks_analytics
WHERE visitor_id != ''
GROUP BY workspace_id, link_id, visitor_id;
