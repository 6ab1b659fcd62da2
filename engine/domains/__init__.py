"""Custom domains: hostname validation, DNS TXT ownership checks, storage."""
