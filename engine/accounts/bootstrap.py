"""First-run bootstrap for `linkrift dev`: a local owner, a workspace and an API key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import asyncpg

from engine.accounts.repository import authenticate_api_key, create_api_key, create_user, create_workspace
from engine.auth.api_key_tokens import SCOPES
from engine.auth.passwords import hash_password
from engine.errors import Unauthorized

DEV_EMAIL = "owner@linkrift.local"


@dataclass(frozen=True)
class DevCredentials:
    base_url: str
    api_key: str
    workspace_id: str
    email: str
    password: str


async def still_valid(conn: asyncpg.Connection, api_key: str, workspace_id: str) -> bool:
    try:
        who = await authenticate_api_key(conn, api_key)
    except Unauthorized:
        return False
    return who.workspace_id == workspace_id


async def create_dev_owner(conn: asyncpg.Connection, base_url: str) -> DevCredentials:
    password = secrets.token_urlsafe(12)
    async with conn.transaction():
        existing = await conn.fetchval("SELECT id FROM users WHERE email = $1", DEV_EMAIL)
        if existing:
            # The credentials file was lost: reset the password, keep the user and their data.
            user_id = str(existing)
            await conn.execute(
                "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
                existing,
                hash_password(password),
            )
            ws = await conn.fetchval(
                "SELECT workspace_id FROM workspace_members WHERE user_id = $1 AND role = 'owner' LIMIT 1",
                existing,
            )
            workspace_id = str(ws) if ws else await create_workspace(conn, user_id, "Local workspace")
        else:
            user_id = await create_user(conn, DEV_EMAIL, hash_password(password), "Local owner")
            await conn.execute("UPDATE users SET email_verified_at = now() WHERE id = $1", user_id)
            workspace_id = await create_workspace(conn, user_id, "Local workspace", slug="local")
            # The operator's own workspace on a self-hosted install is not a billing customer:
            # it gets the unrestricted plan; sign-ups start on `free` as usual.
            await conn.execute("UPDATE workspaces SET plan = 'enterprise' WHERE id = $1", workspace_id)
        _, key = await create_api_key(
            conn, user_id=user_id, workspace_id=workspace_id, name="linkrift dev", scopes=sorted(SCOPES)
        )
    return DevCredentials(base_url, key.plaintext, workspace_id, DEV_EMAIL, password)
