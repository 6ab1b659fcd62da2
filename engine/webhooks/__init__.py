"""Outgoing webhooks: subscriptions, fan-out of LinkRift events, signed delivery with retries."""
