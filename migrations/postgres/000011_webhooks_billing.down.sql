ALTER TABLE subscriptions DROP COLUMN IF EXISTS usage_click_reported;
ALTER TABLE subscriptions DROP COLUMN IF EXISTS last_event_at;
DROP TABLE IF EXISTS billing_customers;
DROP INDEX IF EXISTS idx_webhook_deliveries_log;
DROP INDEX IF EXISTS uq_webhook_deliveries_webhook_event;
ALTER TABLE webhooks DROP COLUMN IF EXISTS previous_secret_expires_at;
ALTER TABLE webhooks DROP COLUMN IF EXISTS previous_secret;
ALTER TABLE webhooks ALTER COLUMN secret TYPE VARCHAR(255);
