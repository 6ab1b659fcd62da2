-- Added (not in spec): tables LinkRift's architecture needs beyond the spec.

-- Transactional outbox for the links.changes topic: the api writes a row in the same
-- transaction as the link change; a relay publishes it to Kafka and sets published_at.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    topic TEXT NOT NULL,
    key TEXT,
    payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);

-- The relay's only query: unpublished rows in id order. Stays tiny as rows get published.
CREATE INDEX idx_outbox_unpublished ON outbox(id) WHERE published_at IS NULL;

-- One row per webhook delivery attempt (replaces the spec's Asynq queue bookkeeping).
CREATE TABLE webhook_deliveries (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id UUID NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event_type VARCHAR(100) NOT NULL,
    payload JSONB NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1 CONSTRAINT webhook_deliveries_attempt_check CHECK (attempt >= 1),
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CONSTRAINT webhook_deliveries_status_check CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
    response_status INTEGER,
    -- Truncated by the deliverer; kept for debugging only.
    response_body TEXT,
    error TEXT,
    next_attempt_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at TIMESTAMPTZ
);

CREATE INDEX idx_webhook_deliveries_webhook ON webhook_deliveries(webhook_id, created_at DESC);
CREATE INDEX idx_webhook_deliveries_event ON webhook_deliveries(event_id);
CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries(next_attempt_at)
    WHERE status IN ('pending', 'failed');

-- Stripe delivers webhooks at least once; a processed event id is recorded here in the same
-- transaction as its effect, so a redelivery is a no-op.
CREATE TABLE billing_events_processed (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
