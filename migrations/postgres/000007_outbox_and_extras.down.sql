DROP TABLE IF EXISTS billing_events_processed;
DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS outbox;
