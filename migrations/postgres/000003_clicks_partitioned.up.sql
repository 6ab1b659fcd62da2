-- Raw clicks, range-partitioned by month (clicked_at, UTC months).
-- Fix: the spec hardcodes clicks_2025_01/02 partitions, so inserts fail once those months
-- pass. Partitions clicks_YYYY_MM are created ahead by linkrift_ensure_click_partitions()
-- (called below and periodically by the worker), and clicks_default catches any timestamp
-- outside the existing partitions so a click is never rejected.

CREATE TABLE clicks (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    -- No FK to links: partitioned high-volume table; clicks outlive deleted links.
    link_id UUID NOT NULL,
    -- Added (not in spec): per-workspace analytics without joining links.
    workspace_id UUID,

    clicked_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),

    visitor_id VARCHAR(64),
    ip_address INET,
    user_agent TEXT,
    referer TEXT,

    country_code CHAR(2),
    region VARCHAR(100),
    city VARCHAR(100),

    device_type VARCHAR(20),
    browser VARCHAR(50),
    browser_version VARCHAR(20),
    os VARCHAR(50),
    os_version VARCHAR(20),

    is_bot BOOLEAN NOT NULL DEFAULT FALSE,
    -- Added (not in spec): link-preview fetches (chat unfurlers), counted apart from visits.
    is_preview BOOLEAN NOT NULL DEFAULT FALSE,
    -- Added (not in spec): where the click came from (EnrichedClick.kind).
    kind VARCHAR(10) NOT NULL DEFAULT 'redirect'
        CONSTRAINT clicks_kind_check CHECK (kind IN ('redirect', 'qr', 'bio')),
    -- Added (not in spec): the click's identity from the redirect, so the sink is idempotent.
    event_id VARCHAR(64),

    utm_source VARCHAR(255),
    utm_medium VARCHAR(255),
    utm_campaign VARCHAR(255),

    PRIMARY KEY (id, clicked_at)
) PARTITION BY RANGE (clicked_at);

CREATE INDEX idx_clicks_link_id ON clicks(link_id, clicked_at DESC);
CREATE INDEX idx_clicks_visitor ON clicks(visitor_id, clicked_at DESC);
CREATE INDEX idx_clicks_workspace ON clicks(workspace_id, clicked_at DESC);
-- A unique index on a partitioned table must contain the partition key, hence clicked_at.
-- The sink inserts with ON CONFLICT (event_id, clicked_at) DO NOTHING.
CREATE UNIQUE INDEX uq_clicks_event ON clicks(event_id, clicked_at);

CREATE TABLE clicks_default PARTITION OF clicks DEFAULT;

-- Creates the partitions for the current UTC month and the next months_ahead months; returns
-- the names it created. Rows already caught by clicks_default for a new month are moved into
-- the new partition (ATTACH would otherwise fail on them).
CREATE FUNCTION linkrift_ensure_click_partitions(months_ahead integer DEFAULT 2)
RETURNS SETOF text
LANGUAGE plpgsql
AS $$
DECLARE
    first_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    month_start timestamptz;
    month_end timestamptz;
    part_name text;
BEGIN
    IF months_ahead < 0 THEN
        RAISE EXCEPTION 'months_ahead must be >= 0, got %', months_ahead;
    END IF;
    FOR i IN 0..months_ahead LOOP
        month_start := (first_month + make_interval(months => i)) AT TIME ZONE 'UTC';
        month_end := (first_month + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
        part_name := 'clicks_' || to_char(first_month + make_interval(months => i), 'YYYY_MM');
        CONTINUE WHEN to_regclass(quote_ident(part_name)) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE clicks INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part_name);
        EXECUTE format(
            'WITH moved AS (DELETE FROM clicks_default WHERE clicked_at >= %L AND clicked_at < %L RETURNING *) '
            'INSERT INTO %I SELECT * FROM moved',
            month_start, month_end, part_name);
        EXECUTE format('ALTER TABLE clicks ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
            part_name, month_start, month_end);
        RETURN NEXT part_name;
    END LOOP;
END;
$$;

SELECT linkrift_ensure_click_partitions(2);
