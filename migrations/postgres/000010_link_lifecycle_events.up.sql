-- Added (not in spec): the worker announces `exhausted` and `expired` exactly once per link.
-- exhausted_at: when the worker saw total clicks reach max_clicks (the api clears it when
-- max_clicks is raised or removed). expired_notified_for: the expires_at value an `expired`
-- event was emitted for; changing expires_at re-arms the event.
ALTER TABLE links ADD COLUMN exhausted_at TIMESTAMPTZ;
ALTER TABLE links ADD COLUMN expired_notified_for TIMESTAMPTZ;

-- The expiry timer's only query: links whose expiry has not been announced yet.
CREATE INDEX idx_links_expiry_pending ON links(expires_at)
    WHERE expires_at IS NOT NULL AND deleted_at IS NULL
      AND expired_notified_for IS DISTINCT FROM expires_at;
