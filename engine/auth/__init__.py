"""Authentication and authorization primitives: pure functions, no I/O.

passwords (argon2id), api_key_tokens (format, hash, scopes), tokens (JWT access, opaque refresh/one-time),
crypto (key derivation, SecretBox), totp (2FA, recovery codes), permissions (roles, actions,
authorize), webhook_signing (Standard Webhooks). See docs/security.md.
"""
