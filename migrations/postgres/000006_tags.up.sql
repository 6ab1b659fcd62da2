-- Tags. Fix: the spec shows tags/link_tags only as a migration example, yet link_tags is in its
-- entity diagram; they belong to the schema. The example's BEGIN/COMMIT are dropped: the
-- migrator runs each file in its own transaction.

CREATE TABLE tags (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name VARCHAR(50) NOT NULL,
    color VARCHAR(7) NOT NULL DEFAULT '#6366f1',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE(workspace_id, name)
);

CREATE TABLE link_tags (
    link_id UUID NOT NULL REFERENCES links(id) ON DELETE CASCADE,
    tag_id UUID NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (link_id, tag_id)
);

-- Kept from the spec, though UNIQUE(workspace_id, name) already leads with workspace_id.
CREATE INDEX idx_tags_workspace ON tags(workspace_id);
CREATE INDEX idx_link_tags_tag ON link_tags(tag_id);
