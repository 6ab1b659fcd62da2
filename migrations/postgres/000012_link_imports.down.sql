DROP INDEX IF EXISTS idx_links_workspace_added;
ALTER TABLE links DROP COLUMN IF EXISTS imported_at;
ALTER TABLE links DROP COLUMN IF EXISTS imported_clicks;
