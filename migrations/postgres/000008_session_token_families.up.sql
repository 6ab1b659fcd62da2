-- Added (not in spec): refresh-token rotation with reuse detection.
-- A `sessions` row is one sign-in, i.e. one refresh-token family; its current token hash stays in
-- sessions.refresh_token_hash. Every hash the family ever issued is remembered here, so presenting
-- an already-rotated token is recognised as reuse and revokes the whole family (the session).
CREATE TABLE session_refresh_tokens (
    token_hash VARCHAR(255) PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_session_refresh_tokens_session ON session_refresh_tokens(session_id);

-- Why a session was revoked (logout, rotation reuse, password change...), for the sessions list.
ALTER TABLE sessions ADD COLUMN revoked_reason VARCHAR(50);

-- Keyset pagination of the audit log walks (workspace_id, created_at DESC, id DESC).
CREATE INDEX idx_audit_logs_workspace_keyset ON audit_logs(workspace_id, created_at DESC, id DESC);
