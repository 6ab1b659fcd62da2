"""Billing: plan limits, Stripe checkout/portal, subscription state from Stripe events, usage."""
