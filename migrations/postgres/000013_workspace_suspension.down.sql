ALTER TABLE workspaces DROP COLUMN IF EXISTS suspended_reason;
ALTER TABLE workspaces DROP COLUMN IF EXISTS suspended_at;
