-- Supporting tables: QR codes, bio pages (with their themes), API keys, webhooks,
-- subscriptions and audit logs.

CREATE TABLE qr_codes (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    link_id UUID NOT NULL REFERENCES links(id) ON DELETE CASCADE,

    -- Added CHECKs: the value sets the spec lists in comments.
    qr_type VARCHAR(20) NOT NULL DEFAULT 'dynamic'
        CONSTRAINT qr_codes_qr_type_check CHECK (qr_type IN ('dynamic', 'static')),
    error_correction VARCHAR(1) NOT NULL DEFAULT 'M'
        CONSTRAINT qr_codes_error_correction_check CHECK (error_correction IN ('L', 'M', 'Q', 'H')),

    foreground_color VARCHAR(7) NOT NULL DEFAULT '#000000',
    background_color VARCHAR(7) NOT NULL DEFAULT '#FFFFFF',
    logo_url VARCHAR(500),

    png_url VARCHAR(500),
    svg_url VARCHAR(500),

    scan_count BIGINT NOT NULL DEFAULT 0,

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_qr_codes_link ON qr_codes(link_id);

-- Fix: bio_pages.theme_id references bio_page_themes, which the spec never defines.
-- workspace_id NULL marks a built-in theme available to every workspace.
CREATE TABLE bio_page_themes (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id UUID REFERENCES workspaces(id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,
    -- e.g. {"background": "#fff", "text": "#111", "button": "#6366f1", "button_text": "#fff"}
    colors JSONB NOT NULL DEFAULT '{}',
    -- e.g. {"family": "Inter", "weight": 400}
    font JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_bio_page_themes_workspace ON bio_page_themes(workspace_id);
-- Theme names are unique per workspace, and among built-in themes.
CREATE UNIQUE INDEX uq_bio_page_themes_name
    ON bio_page_themes ((COALESCE(workspace_id, '00000000-0000-0000-0000-000000000000'::uuid)), name);

CREATE TABLE bio_pages (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,

    slug VARCHAR(100) NOT NULL UNIQUE,
    title VARCHAR(255) NOT NULL,
    bio TEXT,
    avatar_url VARCHAR(500),

    -- A deleted theme falls back to the default rendering.
    theme_id UUID REFERENCES bio_page_themes(id) ON DELETE SET NULL,
    custom_css TEXT,

    meta_title VARCHAR(100),
    meta_description VARCHAR(300),
    og_image_url VARCHAR(500),

    is_published BOOLEAN NOT NULL DEFAULT FALSE,

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    deleted_at TIMESTAMPTZ
);

CREATE INDEX idx_bio_pages_workspace ON bio_pages(workspace_id);
CREATE INDEX idx_bio_pages_slug ON bio_pages(slug) WHERE deleted_at IS NULL;

CREATE TABLE bio_page_links (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    bio_page_id UUID NOT NULL REFERENCES bio_pages(id) ON DELETE CASCADE,

    title VARCHAR(255) NOT NULL,
    url TEXT NOT NULL,
    icon VARCHAR(50),

    position INTEGER NOT NULL DEFAULT 0,
    is_visible BOOLEAN NOT NULL DEFAULT TRUE,

    visible_from TIMESTAMPTZ,
    visible_until TIMESTAMPTZ,

    click_count BIGINT NOT NULL DEFAULT 0,

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_bio_page_links_page ON bio_page_links(bio_page_id, position);

CREATE TABLE api_keys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workspace_id UUID REFERENCES workspaces(id) ON DELETE CASCADE,

    name VARCHAR(255) NOT NULL,
    key_hash VARCHAR(255) NOT NULL,
    key_prefix VARCHAR(12) NOT NULL,

    scopes TEXT[] NOT NULL DEFAULT '{}',

    last_used_at TIMESTAMPTZ,
    request_count BIGINT NOT NULL DEFAULT 0,

    rate_limit INTEGER,
    expires_at TIMESTAMPTZ,

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    revoked_at TIMESTAMPTZ
);

CREATE INDEX idx_api_keys_user ON api_keys(user_id);
-- The spec's strategy table suggests a hash index for the prefix. Kept as B-tree: prefixes are
-- 12 characters, so a hash index saves nothing, and B-tree also serves prefix/range scans.
CREATE INDEX idx_api_keys_prefix ON api_keys(key_prefix);
-- Added: authentication looks a key up by its hash; one row per key.
CREATE UNIQUE INDEX uq_api_keys_key_hash ON api_keys(key_hash);

CREATE TABLE webhooks (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,

    url TEXT NOT NULL,
    secret VARCHAR(255) NOT NULL,

    events TEXT[] NOT NULL DEFAULT '{}',

    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    failure_count INTEGER NOT NULL DEFAULT 0,
    last_triggered_at TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ,

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_webhooks_workspace ON webhooks(workspace_id);

CREATE TABLE subscriptions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,

    stripe_subscription_id VARCHAR(255) UNIQUE,
    stripe_customer_id VARCHAR(255) NOT NULL,
    stripe_price_id VARCHAR(255) NOT NULL,

    -- Added CHECKs: paid plans per the spec; status is Stripe's subscription status set.
    plan VARCHAR(50) NOT NULL
        CONSTRAINT subscriptions_plan_check CHECK (plan IN ('pro', 'business', 'enterprise')),
    status VARCHAR(50) NOT NULL CONSTRAINT subscriptions_status_check CHECK (status IN (
        'active', 'past_due', 'canceled', 'incomplete', 'incomplete_expired', 'trialing', 'unpaid', 'paused'
    )),

    current_period_start TIMESTAMPTZ NOT NULL,
    current_period_end TIMESTAMPTZ NOT NULL,
    cancel_at_period_end BOOLEAN NOT NULL DEFAULT FALSE,

    usage_link_count INTEGER NOT NULL DEFAULT 0,
    usage_click_count BIGINT NOT NULL DEFAULT 0,

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_subscriptions_workspace ON subscriptions(workspace_id);
CREATE INDEX idx_subscriptions_stripe ON subscriptions(stripe_subscription_id);

CREATE TABLE audit_logs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    user_id UUID REFERENCES users(id) ON DELETE SET NULL,

    action VARCHAR(100) NOT NULL,
    resource_type VARCHAR(50) NOT NULL,
    resource_id UUID,

    old_values JSONB,
    new_values JSONB,
    metadata JSONB,

    ip_address INET,
    user_agent TEXT,

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_audit_logs_workspace ON audit_logs(workspace_id, created_at DESC);
CREATE INDEX idx_audit_logs_user ON audit_logs(user_id, created_at DESC);
CREATE INDEX idx_audit_logs_resource ON audit_logs(resource_type, resource_id);
