-- Added (not in spec): links imported from another shortener (CSV import).
-- imported_clicks: the source's click count. total_clicks stays the count of clicks LinkRift
-- tracked itself (the worker writes it as an absolute value from its tables); the api reports
-- total_clicks + imported_clicks as a link's total.
-- imported_at: when the link was imported. created_at carries the source's creation date, so
-- the monthly link quota counts imported links by COALESCE(imported_at, created_at).
ALTER TABLE links ADD COLUMN imported_clicks BIGINT NOT NULL DEFAULT 0
    CONSTRAINT links_imported_clicks_check CHECK (imported_clicks >= 0);
ALTER TABLE links ADD COLUMN imported_at TIMESTAMPTZ;

-- The link quota's count: links added to a workspace since the start of the billing period.
CREATE INDEX idx_links_workspace_added ON links(workspace_id, (COALESCE(imported_at, created_at)));
