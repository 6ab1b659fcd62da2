DROP INDEX IF EXISTS idx_links_expiry_pending;
ALTER TABLE links DROP COLUMN IF EXISTS expired_notified_for;
ALTER TABLE links DROP COLUMN IF EXISTS exhausted_at;
