-- Added (not in spec): an operator may suspend a workspace (`linkrift workspace suspend`).
-- While suspended_at is set its links answer like deleted links (the redirect's query joins
-- only live, unsuspended workspaces) and API writes to its links are refused (403
-- workspace_suspended); reads stay allowed so the owner can export. Resuming clears both.
ALTER TABLE workspaces ADD COLUMN suspended_at TIMESTAMPTZ;
ALTER TABLE workspaces ADD COLUMN suspended_reason TEXT
    CONSTRAINT workspaces_suspended_reason_check CHECK (char_length(suspended_reason) <= 500);
