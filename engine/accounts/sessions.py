"""Sign-in sessions: short-lived JWT access tokens plus rotated, hashed refresh tokens.

A `sessions` row is one sign-in, i.e. one refresh-token family. Each refresh exchanges the current
refresh token for a new one; every hash the family issued is kept in `session_refresh_tokens`, so
presenting an already-rotated token means a copy exists elsewhere and revokes the whole session.
Live sessions are mirrored to Redis (`session:{token hash}` and `user:sessions:{user_id}`) for
cheap listing by other processes; PostgreSQL stays the authority.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import redis.asyncio as redis

from engine.auth.tokens import REFRESH_TOKEN_PREFIX, hash_token, issue_access_token, new_refresh_token
from engine.errors import NotFound, Unauthorized
from engine.naming import RedisKeys

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    session_id: str
    user_id: str
    access_token: str = ""
    refresh_token: str = ""
    expires_in: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "token_type": "Bearer",
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "session_id": self.session_id,
        }


class SessionStore:
    def __init__(
        self, redis_client: redis.Redis, keys: RedisKeys, secret: str, access_ttl: int, refresh_ttl_days: int
    ) -> None:
        self._redis = redis_client
        self._keys = keys
        self._secret = secret
        self._access_ttl = access_ttl
        self._refresh_ttl = timedelta(days=refresh_ttl_days)

    def _tokens(self, session_id: str, user_id: str, refresh_token: str) -> IssuedTokens:
        access = issue_access_token(self._secret, user_id, session_id, ttl=self._access_ttl)
        return IssuedTokens(session_id, user_id, access, refresh_token, self._access_ttl)

    async def start(
        self, conn: asyncpg.Connection, user_id: str, ip: str | None, user_agent: str | None
    ) -> IssuedTokens:
        refresh = new_refresh_token()
        token_hash = hash_token(refresh)
        expires_at = datetime.now(UTC) + self._refresh_ttl
        async with conn.transaction():
            session_id = await conn.fetchval(
                """INSERT INTO sessions (user_id, refresh_token_hash, ip_address, user_agent, expires_at)
                   VALUES ($1, $2, $3::inet, $4, $5) RETURNING id""",
                user_id,
                token_hash,
                ip,
                (user_agent or "")[:1000] or None,
                expires_at,
            )
            await conn.execute(
                "INSERT INTO session_refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
                token_hash,
                session_id,
            )
        await self._mirror_add(user_id, str(session_id), token_hash, expires_at)
        return self._tokens(str(session_id), user_id, refresh)

    async def refresh(self, conn: asyncpg.Connection, refresh_token: str, ip: str | None) -> IssuedTokens:
        """Rotate: the presented token must be the family's current one; an older one revokes it."""
        presented = hash_token(refresh_token)
        async with conn.transaction():
            row = await conn.fetchrow(
                """SELECT s.id, s.user_id, s.refresh_token_hash, s.is_revoked, s.expires_at
                   FROM session_refresh_tokens t JOIN sessions s ON s.id = t.session_id
                   JOIN users u ON u.id = s.user_id AND u.deleted_at IS NULL
                   WHERE t.token_hash = $1 FOR UPDATE OF s""",
                presented,
            )
            if row is None or row["is_revoked"] or row["expires_at"] <= datetime.now(UTC):
                raise Unauthorized("refresh token is invalid or expired")
            session_id, user_id = str(row["id"]), str(row["user_id"])
            if row["refresh_token_hash"] != presented:
                await conn.execute(
                    "UPDATE sessions SET is_revoked = TRUE, revoked_reason = 'refresh_token_reuse' WHERE id = $1",
                    row["id"],
                )
                reused = True
            else:
                reused = False
                refresh = new_refresh_token()
                new_hash = hash_token(refresh)
                await conn.execute(
                    """UPDATE sessions SET refresh_token_hash = $2, last_active_at = now(),
                              ip_address = COALESCE($3::inet, ip_address) WHERE id = $1""",
                    row["id"],
                    new_hash,
                    ip,
                )
                await conn.execute(
                    "INSERT INTO session_refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
                    new_hash,
                    row["id"],
                )
        if reused:
            log.warning("security_event=refresh_token_reuse user_id=%s session_id=%s", user_id, session_id)
            await self._mirror_remove(user_id, session_id, row["refresh_token_hash"])
            raise Unauthorized("refresh token was already used; the session has been revoked")
        await self._redis_quiet(self._redis.delete(self._keys.session(presented)))
        await self._mirror_add(user_id, session_id, new_hash, row["expires_at"])
        return self._tokens(session_id, user_id, refresh)

    async def revoke(self, conn: asyncpg.Connection, user_id: str, session_id: str, reason: str) -> None:
        """Revoke one of the user's sessions; NotFound if it is not theirs (or already revoked)."""
        token_hash = await conn.fetchval(
            """UPDATE sessions SET is_revoked = TRUE, revoked_reason = $3
               WHERE id = $1 AND user_id = $2 AND NOT is_revoked RETURNING refresh_token_hash""",
            session_id,
            user_id,
            reason,
        )
        if token_hash is None:
            raise NotFound("session not found", field="session_id")
        await self._mirror_remove(user_id, session_id, token_hash)

    async def revoke_all(
        self, conn: asyncpg.Connection, user_id: str, reason: str, except_session: str | None = None
    ) -> int:
        rows = await conn.fetch(
            """UPDATE sessions SET is_revoked = TRUE, revoked_reason = $3
               WHERE user_id = $1 AND NOT is_revoked AND id IS DISTINCT FROM $2::uuid
               RETURNING id, refresh_token_hash""",
            user_id,
            except_session,
            reason,
        )
        for r in rows:
            await self._mirror_remove(user_id, str(r["id"]), r["refresh_token_hash"])
        return len(rows)

    async def list_active(self, conn: asyncpg.Connection, user_id: str) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            """SELECT id, host(ip_address) AS ip_address, user_agent, device_name, last_active_at,
                      created_at, expires_at
               FROM sessions WHERE user_id = $1 AND NOT is_revoked AND expires_at > now()
               ORDER BY last_active_at DESC""",
            user_id,
        )
        return [
            {
                "id": str(r["id"]),
                "ip_address": r["ip_address"],
                "user_agent": r["user_agent"],
                "device_name": r["device_name"],
                "last_active_at": r["last_active_at"].isoformat(),
                "created_at": r["created_at"].isoformat(),
                "expires_at": r["expires_at"].isoformat(),
            }
            for r in rows
        ]

    async def _mirror_add(self, user_id: str, session_id: str, token_hash: str, expires_at: datetime) -> None:
        ttl = max(1, int((expires_at - datetime.now(UTC)).total_seconds()))
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(
            self._keys.session(token_hash),
            mapping={"user_id": user_id, "session_id": session_id, "expires_at": int(expires_at.timestamp())},
        )
        pipe.expire(self._keys.session(token_hash), ttl)
        pipe.sadd(self._keys.user_sessions(user_id), session_id)
        await self._redis_quiet(pipe.execute())

    async def _mirror_remove(self, user_id: str, session_id: str, token_hash: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(self._keys.session(token_hash))
        pipe.srem(self._keys.user_sessions(user_id), session_id)
        await self._redis_quiet(pipe.execute())

    @staticmethod
    async def _redis_quiet(awaitable: Any) -> None:
        # The mirror is a convenience: a Redis outage must not fail a sign-in or a logout.
        try:
            await awaitable
        except (redis.RedisError, OSError) as exc:
            log.warning("session mirror error=%s", exc)


async def session_is_live(conn: asyncpg.Connection, user_id: str, session_id: str) -> bool:
    """The access token's session still exists, is not revoked or expired, and its user is active."""
    return bool(
        await conn.fetchval(
            """SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id AND u.deleted_at IS NULL
               WHERE s.id = $1 AND s.user_id = $2 AND NOT s.is_revoked AND s.expires_at > now()""",
            session_id,
            user_id,
        )
    )


async def browser_session(conn: asyncpg.Connection, token: str) -> tuple[str, str] | None:
    """(session_id, user_id) of a web app cookie: the session's current refresh token, while the
    session is live and its user active. A browser session is never rotated, so revoking the
    session (sessions list, logout, password change) ends the cookie at once."""
    if not token.startswith(REFRESH_TOKEN_PREFIX) or len(token) > 200:
        return None
    row = await conn.fetchrow(
        """SELECT s.id, s.user_id FROM sessions s JOIN users u ON u.id = s.user_id AND u.deleted_at IS NULL
           WHERE s.refresh_token_hash = $1 AND NOT s.is_revoked AND s.expires_at > now()""",
        hash_token(token),
    )
    return (str(row["id"]), str(row["user_id"])) if row else None
