DROP INDEX IF EXISTS idx_audit_logs_workspace_keyset;
ALTER TABLE sessions DROP COLUMN IF EXISTS revoked_reason;
DROP TABLE IF EXISTS session_refresh_tokens;
