-- Added (not in spec): what webhook secret rotation, idempotent fan-out and Stripe billing need.

-- Secrets are stored SecretBox-encrypted (a Fernet token is ~165 chars; two no longer fit 255).
-- After a rotation the previous secret still signs (second signature) until it expires.
ALTER TABLE webhooks ALTER COLUMN secret TYPE TEXT;
ALTER TABLE webhooks ADD COLUMN previous_secret TEXT;
ALTER TABLE webhooks ADD COLUMN previous_secret_expires_at TIMESTAMPTZ;

-- One delivery row per (webhook, event): a re-consumed event or a replayed click batch is a no-op.
CREATE UNIQUE INDEX uq_webhook_deliveries_webhook_event ON webhook_deliveries(webhook_id, event_id);
-- The delivery log's keyset pagination: newest first, id as tie-breaker.
CREATE INDEX idx_webhook_deliveries_log ON webhook_deliveries(webhook_id, created_at DESC, id DESC);

-- The Stripe customer of a workspace, created at its first checkout (before any subscription).
CREATE TABLE billing_customers (
    workspace_id UUID PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    stripe_customer_id VARCHAR(255) NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Stripe does not order webhook deliveries: `created` of the newest event applied to a
-- subscription, so an older `updated` arriving after `deleted` is ignored.
ALTER TABLE subscriptions ADD COLUMN last_event_at TIMESTAMPTZ;
-- The click count last reported to the usage meter (meter events carry deltas).
ALTER TABLE subscriptions ADD COLUMN usage_click_reported BIGINT NOT NULL DEFAULT 0;
