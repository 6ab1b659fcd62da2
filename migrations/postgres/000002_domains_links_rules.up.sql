-- Domains, links and link rules.
-- Fix: the spec creates links (which references domains) before domains; domains come first here.

CREATE TABLE domains (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,

    domain VARCHAR(255) NOT NULL UNIQUE,
    is_verified BOOLEAN NOT NULL DEFAULT FALSE,
    verified_at TIMESTAMPTZ,

    ssl_status VARCHAR(50) NOT NULL DEFAULT 'pending',
    ssl_expires_at TIMESTAMPTZ,

    dns_records JSONB NOT NULL DEFAULT '[]',
    last_dns_check_at TIMESTAMPTZ,

    default_redirect_url TEXT,
    custom_404_url TEXT,

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    deleted_at TIMESTAMPTZ
);

CREATE INDEX idx_domains_workspace ON domains(workspace_id);
CREATE INDEX idx_domains_domain ON domains(domain) WHERE deleted_at IS NULL;

CREATE TABLE links (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    domain_id UUID REFERENCES domains(id) ON DELETE SET NULL,

    url TEXT NOT NULL,
    short_code VARCHAR(50) NOT NULL,
    title VARCHAR(500),
    description TEXT,
    favicon_url VARCHAR(500),
    og_image_url VARCHAR(500),

    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    password_hash VARCHAR(255),
    expires_at TIMESTAMPTZ,
    max_clicks INTEGER CONSTRAINT links_max_clicks_check CHECK (max_clicks IS NULL OR max_clicks > 0),
    -- Added (not in spec): HTTP status of the redirect and whether the visitor's query string
    -- is appended to the destination.
    redirect_type SMALLINT NOT NULL DEFAULT 302
        CONSTRAINT links_redirect_type_check CHECK (redirect_type IN (301, 302, 307, 308)),
    forward_query BOOLEAN NOT NULL DEFAULT FALSE,

    utm_source VARCHAR(255),
    utm_medium VARCHAR(255),
    utm_campaign VARCHAR(255),
    utm_term VARCHAR(255),
    utm_content VARCHAR(255),

    -- Counters (denormalized for performance)
    total_clicks BIGINT NOT NULL DEFAULT 0,
    unique_clicks BIGINT NOT NULL DEFAULT 0,

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    deleted_at TIMESTAMPTZ
    -- Fix: the spec's "UNIQUE(short_code) WHERE deleted_at IS NULL" is not valid inside CREATE
    -- TABLE (a table constraint cannot be partial). It is the partial unique index below.
);

-- Fix: short codes are unique per domain (the same code may exist on two domains), and only
-- among live links. domain_id NULL means the default domain; COALESCE maps it to the nil UUID
-- because NULLs never collide in a unique index.
CREATE UNIQUE INDEX uq_links_domain_short_code
    ON links ((COALESCE(domain_id, '00000000-0000-0000-0000-000000000000'::uuid)), short_code)
    WHERE deleted_at IS NULL;

-- Reconciled with "Key Indexes": the table section declares idx_links_user and idx_links_domain
-- as partial (WHERE deleted_at IS NULL), "Key Indexes" as full indexes "for JOIN performance".
-- Names must be unique, so one definition each: the full index, because ON DELETE CASCADE /
-- SET NULL from users and domains must also find soft-deleted links.
CREATE INDEX idx_links_user ON links(user_id);
CREATE INDEX idx_links_domain ON links(domain_id);
CREATE INDEX idx_links_workspace ON links(workspace_id) WHERE deleted_at IS NULL;
-- Kept from the spec (identical in both sections): code lookups across domains.
CREATE INDEX idx_links_short_code ON links(short_code) WHERE deleted_at IS NULL;
CREATE INDEX idx_links_created_at ON links(created_at DESC);
-- From "Key Indexes": the workspace link list (ORDER BY created_at DESC).
CREATE INDEX idx_links_workspace_created ON links(workspace_id, created_at DESC) WHERE deleted_at IS NULL;
-- Fix: the spec's to_tsvector('english', title || ' ' || ...) is NULL whenever title is NULL,
-- so untitled links were unsearchable; both parts are COALESCEd.
CREATE INDEX idx_links_search ON links USING GIN (
    to_tsvector('english', COALESCE(title, '') || ' ' || COALESCE(description, ''))
);

CREATE TABLE link_rules (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    link_id UUID NOT NULL REFERENCES links(id) ON DELETE CASCADE,

    -- Added CHECK: the spec's rule types plus 'language' (the architecture's language rules).
    rule_type VARCHAR(50) NOT NULL CONSTRAINT link_rules_rule_type_check
        CHECK (rule_type IN ('device', 'geo', 'time', 'ab_test', 'referrer', 'language')),
    priority INTEGER NOT NULL DEFAULT 0,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,

    conditions JSONB NOT NULL DEFAULT '{}',

    destination_url TEXT NOT NULL,

    -- A/B test distribution weight.
    weight INTEGER CONSTRAINT link_rules_weight_check CHECK (weight IS NULL OR weight >= 0),

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_link_rules_link ON link_rules(link_id);
CREATE INDEX idx_link_rules_active ON link_rules(link_id, is_active) WHERE is_active = TRUE;
-- From "Key Indexes": containment queries on rule conditions.
CREATE INDEX idx_link_rules_conditions ON link_rules USING GIN (conditions);
