"""People: sign-up, password login (with rehash and 2FA), profile, password change and reset,
email verification and TOTP enrolment. Sessions live in `engine.accounts.sessions`."""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from engine.accounts.repository import create_user, create_workspace
from engine.auth import totp
from engine.auth.crypto import SecretBox
from engine.auth.passwords import hash_password, needs_rehash, validate_password, verify_password
from engine.auth.tokens import hash_token, new_one_time_token
from engine.errors import Conflict, Unauthorized, ValidationFailed

_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


class TwoFactorRequired(Unauthorized):
    """The password was right; a TOTP or recovery code must come with it."""

    code = "two_factor_required"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str
    email_verified: bool
    two_factor_enabled: bool
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "email_verified": self.email_verified,
            "two_factor_enabled": self.two_factor_enabled,
            "created_at": self.created_at.isoformat(),
        }


_USER_COLUMNS = "id, email, name, email_verified_at, two_factor_enabled, created_at"


def _user(row: asyncpg.Record) -> User:
    return User(
        id=str(row["id"]),
        email=row["email"],
        name=row["name"],
        email_verified=row["email_verified_at"] is not None,
        two_factor_enabled=row["two_factor_enabled"],
        created_at=row["created_at"],
    )


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 255 or not _EMAIL_RE.fullmatch(email):
        raise ValidationFailed("not a valid email address", field="email")
    return email


@functools.cache
def _dummy_hash() -> str:
    return hash_password("timing-equaliser-not-a-password")


async def _hash(password: str) -> str:
    validate_password(password)
    # argon2 takes ~50 ms of CPU: keep it off the event loop.
    return await asyncio.to_thread(hash_password, password)


async def _verify(password_hash: str, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)


async def get_user(conn: asyncpg.Connection, user_id: str) -> User:
    row = await conn.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL", user_id
    )
    if row is None:
        raise Unauthorized("user no longer exists")
    return _user(row)


async def sign_up(conn: asyncpg.Connection, email: str, password: str, name: str) -> tuple[User, str]:
    """Create the user and a personal workspace they own; returns (user, workspace_id)."""
    email = normalize_email(email)
    password_hash = await _hash(password)
    name = name.strip()
    if not name:
        raise ValidationFailed("name must not be empty", field="name")
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM users WHERE email = $1", email):
            raise Conflict("an account with this email already exists", field="email")
        try:
            user_id = await create_user(conn, email, password_hash, name)
        except asyncpg.UniqueViolationError:
            raise Conflict("an account with this email already exists", field="email") from None
        workspace_id = await create_workspace(conn, user_id, f"{name}'s workspace")
    return await get_user(conn, user_id), workspace_id


async def authenticate(
    conn: asyncpg.Connection,
    box: SecretBox,
    email: str,
    password: str,
    totp_code: str | None = None,
    recovery_code: str | None = None,
) -> User:
    """The user for these credentials. Every wrong email/password is the same 401, and an unknown
    email costs the same argon2 run as a known one, so login never reveals whether an email exists."""
    row = await conn.fetchrow(
        f"""SELECT {_USER_COLUMNS}, password_hash, two_factor_secret FROM users
            WHERE email = $1 AND deleted_at IS NULL""",
        email.strip().lower(),
    )
    stored = row["password_hash"] if row is not None else _dummy_hash()
    ok = await _verify(stored, password)
    if row is None or not ok:
        raise Unauthorized("invalid email or password")
    user = _user(row)
    if user.two_factor_enabled:
        if recovery_code:
            await _consume_recovery_code(conn, user.id, recovery_code)
        elif totp_code:
            await _check_totp(conn, box, user.id, row["two_factor_secret"], totp_code)
        else:
            raise TwoFactorRequired("two-factor code required", field="totp_code")
    if needs_rehash(stored):
        await conn.execute(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
            user.id,
            await asyncio.to_thread(hash_password, password),
        )
    return user


async def update_profile(conn: asyncpg.Connection, user_id: str, name: str) -> User:
    name = name.strip()
    if not name:
        raise ValidationFailed("name must not be empty", field="name")
    await conn.execute("UPDATE users SET name = $2, updated_at = now() WHERE id = $1", user_id, name)
    return await get_user(conn, user_id)


async def change_password(conn: asyncpg.Connection, user_id: str, current: str, new: str) -> None:
    stored = await conn.fetchval(
        "SELECT password_hash FROM users WHERE id = $1 AND deleted_at IS NULL", user_id
    )
    if stored is None or not await _verify(stored, current):
        raise ValidationFailed("current password is wrong", field="current_password")
    try:
        new_hash = await _hash(new)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, field="new_password") from None
    await conn.execute(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, new_hash
    )


async def soft_delete(conn: asyncpg.Connection, user_id: str, password: str) -> list[str]:
    """Mark the user deleted and soft-delete the workspaces they own alone; returns those ids.

    Refused (409) while they own a workspace that has other members: transfer it first.
    """
    stored = await conn.fetchval(
        "SELECT password_hash FROM users WHERE id = $1 AND deleted_at IS NULL", user_id
    )
    if stored is None or not await _verify(stored, password):
        raise ValidationFailed("password is wrong", field="password")
    async with conn.transaction():
        shared = await conn.fetchval(
            """SELECT w.id FROM workspaces w
               WHERE w.owner_id = $1 AND w.deleted_at IS NULL
                 AND EXISTS (SELECT 1 FROM workspace_members m WHERE m.workspace_id = w.id AND m.user_id <> $1)
               LIMIT 1""",
            user_id,
        )
        if shared is not None:
            raise Conflict("transfer ownership of your shared workspaces first", field="workspace_id")
        deleted = await conn.fetch(
            """UPDATE workspaces SET deleted_at = now(), updated_at = now()
               WHERE owner_id = $1 AND deleted_at IS NULL RETURNING id""",
            user_id,
        )
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", user_id
        )
        await conn.execute("DELETE FROM workspace_members WHERE user_id = $1", user_id)
        # The email is freed for a new sign-up; the row keeps the id for audit references.
        await conn.execute(
            """UPDATE users SET deleted_at = now(), updated_at = now(),
                      email = 'deleted+' || id::text || '@invalid', password_hash = '!deleted',
                      two_factor_secret = NULL, two_factor_recovery_codes = NULL
               WHERE id = $1""",
            user_id,
        )
    return [str(r["id"]) for r in deleted]


# --- single-use tokens: email verification and password reset ---------------------------------


async def create_email_verification(conn: asyncpg.Connection, user_id: str, ttl: timedelta) -> str:
    token = new_one_time_token()
    await conn.execute(
        "INSERT INTO email_verifications (user_id, token_hash, expires_at) VALUES ($1, $2, $3)",
        user_id,
        hash_token(token),
        datetime.now(UTC) + ttl,
    )
    return token


async def _consume_token(
    conn: asyncpg.Connection, table: Literal["email_verifications", "password_resets"], token: str, what: str
) -> Any:
    """Mark a single-use, expiring token used and return its user id (422 naming `token` if not usable)."""
    user_id = await conn.fetchval(
        f"""UPDATE {table} SET used_at = now()
            WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id""",
        hash_token(token),
    )
    if user_id is None:
        raise ValidationFailed(f"{what} is invalid, used or expired", field="token")
    return user_id


async def verify_email(conn: asyncpg.Connection, token: str) -> str:
    async with conn.transaction():
        user_id = await _consume_token(conn, "email_verifications", token, "verification link")
        await conn.execute(
            "UPDATE users SET email_verified_at = COALESCE(email_verified_at, now()) WHERE id = $1", user_id
        )
    return str(user_id)


async def create_password_reset(
    conn: asyncpg.Connection, email: str, ttl: timedelta
) -> tuple[User, str] | None:
    """A reset token for the account, or None when no such account exists (caller answers the same)."""
    row = await conn.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users WHERE email = $1 AND deleted_at IS NULL",
        email.strip().lower(),
    )
    if row is None:
        return None
    token = new_one_time_token()
    await conn.execute(
        "INSERT INTO password_resets (user_id, token_hash, expires_at) VALUES ($1, $2, $3)",
        row["id"],
        hash_token(token),
        datetime.now(UTC) + ttl,
    )
    return _user(row), token


async def reset_password(conn: asyncpg.Connection, token: str, new_password: str) -> str:
    try:
        new_hash = await _hash(new_password)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, field="password") from None
    async with conn.transaction():
        user_id = await _consume_token(conn, "password_resets", token, "reset link")
        # Other outstanding reset links die with this one.
        await conn.execute(
            "UPDATE password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", user_id
        )
        await conn.execute(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, new_hash
        )
    return str(user_id)


# --- two-factor authentication ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str


async def begin_totp(conn: asyncpg.Connection, box: SecretBox, user: User) -> TotpEnrolment:
    """Store a fresh encrypted secret (2FA stays off until `enable_totp` verifies a code)."""
    if user.two_factor_enabled:
        raise Conflict("two-factor authentication is already enabled", field="two_factor")
    secret = totp.new_totp_secret()
    await conn.execute(
        "UPDATE users SET two_factor_secret = $2, totp_last_step = NULL, updated_at = now() WHERE id = $1",
        user.id,
        box.encrypt(secret),
    )
    uri = totp.provisioning_uri(secret, user.email)
    return TotpEnrolment(secret, uri, totp.provisioning_qr_svg(uri))


async def enable_totp(conn: asyncpg.Connection, box: SecretBox, user_id: str, code: str) -> list[str]:
    """Verify the first code, turn 2FA on and return fresh recovery codes (shown once)."""
    row = await conn.fetchrow(
        "SELECT two_factor_enabled, two_factor_secret FROM users WHERE id = $1", user_id
    )
    if row is None or row["two_factor_secret"] is None:
        raise Conflict("start two-factor setup first", field="two_factor")
    if row["two_factor_enabled"]:
        raise Conflict("two-factor authentication is already enabled", field="two_factor")
    await _check_totp(conn, box, user_id, row["two_factor_secret"], code)
    codes = totp.generate_recovery_codes()
    await conn.execute(
        """UPDATE users SET two_factor_enabled = TRUE, two_factor_recovery_codes = $2, updated_at = now()
           WHERE id = $1""",
        user_id,
        totp.hash_recovery_codes(codes),
    )
    return codes


async def disable_totp(conn: asyncpg.Connection, user_id: str, password: str) -> None:
    stored = await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
    if stored is None or not await _verify(stored, password):
        raise ValidationFailed("password is wrong", field="password")
    await conn.execute(
        """UPDATE users SET two_factor_enabled = FALSE, two_factor_secret = NULL,
                  two_factor_recovery_codes = NULL, totp_last_step = NULL, updated_at = now()
           WHERE id = $1""",
        user_id,
    )


async def _check_totp(conn: asyncpg.Connection, box: SecretBox, user_id: str, sealed: str, code: str) -> None:
    last = await conn.fetchval("SELECT totp_last_step FROM users WHERE id = $1", user_id)
    step = totp.verify_totp(box.decrypt(sealed), code, last)
    # Compare-and-set: two concurrent logins cannot both spend one code.
    if step is None or not await conn.fetchval(
        """UPDATE users SET totp_last_step = $2 WHERE id = $1
             AND (totp_last_step IS NULL OR totp_last_step < $2) RETURNING 1""",
        user_id,
        step,
    ):
        raise Unauthorized("two-factor code is invalid", field="totp_code")


async def _consume_recovery_code(conn: asyncpg.Connection, user_id: str, code: str) -> None:
    stored = await conn.fetchval("SELECT two_factor_recovery_codes FROM users WHERE id = $1", user_id)
    remaining = totp.consume_recovery_code(code, stored or [])
    if remaining is None or not await conn.fetchval(
        """UPDATE users SET two_factor_recovery_codes = $2 WHERE id = $1
             AND two_factor_recovery_codes = $3 RETURNING 1""",
        user_id,
        remaining,
        stored,
    ):
        raise Unauthorized("recovery code is invalid", field="recovery_code")
