"""What happens to a click: the raw event the redirect emits and its enrichment."""
