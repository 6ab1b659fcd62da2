"""Analytics reads: ClickHouse history plus live counters."""
