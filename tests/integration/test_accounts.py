"""Accounts through the real api: sign-up, login, refresh rotation with reuse detection, logout,
sessions, JWT principal, password reset and email verification via the outbox, 2FA, deletion."""

from __future__ import annotations

import asyncpg
import pyotp
import pytest
from argon2 import PasswordHasher, Type

from tests.integration.helpers import PASSWORD, bearer, outbox_tokens, signup

pytestmark = pytest.mark.integration


async def test_signup_login_me_and_jwt_principal(api) -> None:
    user = await signup(api, "Ann@Example.test")
    assert user["user"]["email"] == "ann@example.test" and user["token_type"] == "Bearer"
    resp = await api.client.get("/api/v1/users/me", headers=bearer(user["access_token"]))
    assert resp.status == 200 and (await resp.json())["email_verified"] is False
    # The access token acts in the user's first workspace, with the user's role (no scopes).
    resp = await api.client.post(
        "/api/v1/links", json={"url": "https://a.example"}, headers=bearer(user["access_token"])
    )
    assert resp.status == 201 and (await resp.json())["workspace_id"] == user["workspace_id"]
    # A workspace the user is not a member of is a 404, a malformed id a 422.
    other = bearer(user["access_token"], api.workspace_id)
    assert (
        await api.client.post("/api/v1/links", json={"url": "https://a.example"}, headers=other)
    ).status == 404
    bad = bearer(user["access_token"], "nope")
    resp = await api.client.post("/api/v1/links", json={"url": "https://a.example"}, headers=bad)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "X-Workspace-Id"
    # Same email again conflicts.
    resp = await api.client.post(
        "/api/v1/auth/signup", json={"email": "ann@example.test", "password": PASSWORD, "name": "B"}
    )
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "email"


async def test_login_never_reveals_whether_email_exists(api) -> None:
    user = await signup(api)
    wrong_pw = await api.client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": "x" * 12}
    )
    unknown = await api.client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.test", "password": "x" * 12}
    )
    assert wrong_pw.status == unknown.status == 401
    assert await wrong_pw.json() == await unknown.json()
    ok = await api.client.post(
        "/api/v1/auth/login", json={"email": user["email"].upper(), "password": PASSWORD}
    )
    assert ok.status == 200 and ok.cookies["lr_refresh"]["httponly"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "name": "A"}, "email"),
        ({"email": "a@b.example", "password": "short", "name": "A"}, "password"),
        ({"email": "a@b.example", "password": PASSWORD, "name": ""}, "name"),
        ({"email": "a@b.example", "password": PASSWORD}, "name"),
        ({"email": "a@b.example", "password": PASSWORD, "name": "A", "admin": True}, "admin"),
    ],
)
async def test_signup_validation_names_the_field(api, body, field) -> None:
    resp = await api.client.post("/api/v1/auth/signup", json=body)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == field


async def test_refresh_rotates_and_reuse_revokes_the_family(api) -> None:
    user = await signup(api)
    first = user["refresh_token"]
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert resp.status == 200
    rotated = await resp.json()
    assert rotated["refresh_token"] != first and rotated["session_id"] == user["session_id"]
    assert (await api.client.get("/api/v1/users/me", headers=bearer(rotated["access_token"]))).status == 200
    # Replaying the old token: someone holds a copy, so the whole session dies.
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert resp.status == 401
    assert (
        await api.client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    ).status == 401
    assert (await api.client.get("/api/v1/users/me", headers=bearer(rotated["access_token"]))).status == 401
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        reason = await conn.fetchval("SELECT revoked_reason FROM sessions WHERE id = $1", user["session_id"])
    finally:
        await conn.close()
    assert reason == "refresh_token_reuse"


async def test_refresh_from_cookie_and_garbage(api) -> None:
    user = await signup(api)
    resp = await api.client.post("/api/v1/auth/refresh")  # the signup response set the cookie
    assert resp.status == 200 and (await resp.json())["refresh_token"] != user["refresh_token"]
    api.client.session.cookie_jar.clear()
    assert (await api.client.post("/api/v1/auth/refresh", json={"refresh_token": "lrr_nope"})).status == 401
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": 5})
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "refresh_token"


async def test_sessions_list_revoke_and_logout(api, redis_client) -> None:
    user = await signup(api)
    login = await (
        await api.client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    ).json()
    me = bearer(user["access_token"])
    sessions = (await (await api.client.get("/api/v1/sessions", headers=me)).json())["data"]
    assert {s["id"] for s in sessions} == {user["session_id"], login["session_id"]}
    assert [s["current"] for s in sessions if s["id"] == user["session_id"]] == [True]
    members = await redis_client.smembers(f"{api.settings.namespace}:user:sessions:{user['user']['id']}")
    assert {m.decode() for m in members} == {user["session_id"], login["session_id"]}
    # Revoking the second session ends its access token at once.
    assert (await api.client.delete(f"/api/v1/sessions/{login['session_id']}", headers=me)).status == 204
    assert (await api.client.get("/api/v1/users/me", headers=bearer(login["access_token"]))).status == 401
    assert (await api.client.delete(f"/api/v1/sessions/{login['session_id']}", headers=me)).status == 404
    assert (await api.client.delete("/api/v1/sessions/not-a-uuid", headers=me)).status == 422
    assert (await api.client.post("/api/v1/auth/logout", headers=me)).status == 204
    assert (await api.client.get("/api/v1/users/me", headers=me)).status == 401
    # API keys cannot use account endpoints.
    assert (await api.client.get("/api/v1/users/me", headers=api.auth)).status == 403


async def test_password_change_revokes_other_sessions(api) -> None:
    user = await signup(api)
    other = await (
        await api.client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    ).json()
    me = bearer(user["access_token"])
    resp = await api.client.post(
        "/api/v1/users/me/password",
        json={"current_password": "wrong-one!", "new_password": "n" * 12},
        headers=me,
    )
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "current_password"
    resp = await api.client.post(
        "/api/v1/users/me/password", json={"current_password": PASSWORD, "new_password": "new"}, headers=me
    )
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "new_password"
    resp = await api.client.post(
        "/api/v1/users/me/password", json={"current_password": PASSWORD, "new_password": "n" * 12}, headers=me
    )
    assert resp.status == 204
    assert (await api.client.get("/api/v1/users/me", headers=me)).status == 200
    assert (await api.client.get("/api/v1/users/me", headers=bearer(other["access_token"]))).status == 401
    login = await api.client.post("/api/v1/auth/login", json={"email": user["email"], "password": "n" * 12})
    assert login.status == 200


async def test_password_reset_by_single_use_token_from_outbox(api) -> None:
    user = await signup(api)
    assert (
        await api.client.post("/api/v1/auth/password/forgot", json={"email": "ghost@example.test"})
    ).status == 202
    assert outbox_tokens(api, "ghost@example.test") == []
    assert (
        await api.client.post("/api/v1/auth/password/forgot", json={"email": user["email"]})
    ).status == 202
    tokens = outbox_tokens(api, user["email"])
    assert len(tokens) == 2  # verification mail from sign-up + reset mail
    token = tokens[-1]
    body = {"token": token, "password": "brand new password"}
    assert (await api.client.post("/api/v1/auth/password/reset", json=body)).status == 204
    resp = await api.client.post("/api/v1/auth/password/reset", json=body)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "token"
    # The reset signs out every session and the new password works.
    assert (await api.client.get("/api/v1/users/me", headers=bearer(user["access_token"]))).status == 401
    ok = await api.client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": "brand new password"}
    )
    assert ok.status == 200


async def test_email_verification_from_outbox(api) -> None:
    user = await signup(api)
    token = outbox_tokens(api, user["email"])[0]
    assert (await api.client.post("/api/v1/auth/verify-email", json={"token": token})).status == 204
    assert (await api.client.post("/api/v1/auth/verify-email", json={"token": token})).status == 422
    me = await (await api.client.get("/api/v1/users/me", headers=bearer(user["access_token"]))).json()
    assert me["email_verified"] is True


async def test_login_rehashes_weaker_password_hash(api) -> None:
    user = await signup(api)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(PASSWORD)
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user["user"]["id"], weak)
        assert (
            await api.client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
        ).status == 200
        stored = await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", user["user"]["id"])
    finally:
        await conn.close()
    assert stored != weak and "m=19456,t=2,p=1" in stored


async def test_two_factor_enrol_login_and_recovery(api) -> None:
    user = await signup(api)
    me = bearer(user["access_token"])
    setup = await (await api.client.post("/api/v1/users/me/2fa/setup", headers=me)).json()
    assert setup["qr_svg"].startswith("<svg") and setup["otpauth_uri"].startswith("otpauth://totp/")
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        sealed = await conn.fetchval("SELECT two_factor_secret FROM users WHERE id = $1", user["user"]["id"])
    finally:
        await conn.close()
    assert sealed and setup["secret"] not in sealed  # encrypted at rest
    resp = await api.client.post("/api/v1/users/me/2fa/enable", json={"code": "000000"}, headers=me)
    assert resp.status == 401 and (await resp.json())["error"]["field"] == "totp_code"
    code = pyotp.TOTP(setup["secret"]).now()
    codes = (
        await (await api.client.post("/api/v1/users/me/2fa/enable", json={"code": code}, headers=me)).json()
    )["recovery_codes"]
    assert len(codes) == 10
    creds = {"email": user["email"], "password": PASSWORD}
    resp = await api.client.post("/api/v1/auth/login", json=creds)
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "two_factor_required"
    # The code that enabled 2FA cannot be replayed.
    assert (await api.client.post("/api/v1/auth/login", json={**creds, "totp_code": code})).status == 401
    assert (
        await api.client.post("/api/v1/auth/login", json={**creds, "recovery_code": codes[0]})
    ).status == 200
    assert (
        await api.client.post("/api/v1/auth/login", json={**creds, "recovery_code": codes[0]})
    ).status == 401
    assert (
        await api.client.post("/api/v1/auth/login", json={**creds, "recovery_code": codes[1].upper()})
    ).status == 200


async def test_soft_delete_user(api) -> None:
    user = await signup(api)
    me = bearer(user["access_token"])
    resp = await api.client.request(
        "DELETE", "/api/v1/users/me", json={"password": "wrong password"}, headers=me
    )
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "password"
    assert (
        await api.client.request("DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=me)
    ).status == 204
    assert (await api.client.get("/api/v1/users/me", headers=me)).status == 401
    login = await api.client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert login.status == 401
    # The email can sign up again.
    await signup(api, user["email"])
