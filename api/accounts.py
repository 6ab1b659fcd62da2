"""Accounts API: sign-up, login, token refresh, logout, profile, password, sessions and 2FA.

Access tokens are JWTs (`Authorization: Bearer ...`); refresh tokens come back in the body and in
an HttpOnly cookie scoped to /api/v1/auth, and are rotated on every refresh.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import signed_in_user
from api.errors import json_response
from api.http import list_response, parse_model, parse_uuid, read_json
from api.state import KEYS, PG, REDIS, SETTINGS
from engine.accounts import users
from engine.accounts.mailer import Mailer
from engine.accounts.sessions import IssuedTokens, SessionStore
from engine.auth.crypto import SecretBox
from engine.errors import Unauthorized

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SESSIONS = web.AppKey("sessions", SessionStore)
MAILER = web.AppKey("mailer", Mailer)
SECRETS = web.AppKey("secretbox", SecretBox)
REFRESH_COOKIE = "lr_refresh"
_COOKIE_PATH = "/api/v1/auth"


async def accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[SESSIONS] = SessionStore(
        app[REDIS], app[KEYS], settings.secret_key, settings.access_token_ttl, settings.refresh_token_ttl_days
    )
    app[MAILER] = Mailer(settings.smtp_url, settings.smtp_from, settings.data_dir.resolve() / "outbox")
    app[SECRETS] = SecretBox(settings.secret_key)
    yield


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignUp(_Body):
    email: str = Field(max_length=255)
    password: str = Field(max_length=1024)
    name: str = Field(min_length=1, max_length=255)


class Login(_Body):
    email: str = Field(max_length=255)
    password: str = Field(max_length=1024)
    totp_code: str | None = Field(None, max_length=10)
    recovery_code: str | None = Field(None, max_length=20)


class RefreshBody(_Body):
    refresh_token: str | None = Field(default=None, max_length=200)


class TokenBody(_Body):
    token: str = Field(min_length=1, max_length=200)


class ForgotPassword(_Body):
    email: str = Field(max_length=255)


class ResetPassword(_Body):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(max_length=1024)


class ProfileUpdate(_Body):
    name: str = Field(min_length=1, max_length=255)


class PasswordChange(_Body):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class PasswordConfirm(_Body):
    password: str = Field(max_length=1024)


class TotpCode(_Body):
    code: str = Field(min_length=1, max_length=10)


def _client_ip(request: web.Request) -> str | None:
    return request.remote


def _token_response(
    request: web.Request, tokens: IssuedTokens, status: int = 200, **extra: object
) -> web.Response:
    resp = json_response({**tokens.to_json(), **extra}, status)
    settings = request.app[SETTINGS]
    resp.set_cookie(
        REFRESH_COOKIE,
        tokens.refresh_token,
        path=_COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=settings.env == "production",
        max_age=settings.refresh_token_ttl_days * 86400,
    )
    return resp


async def _send_verification(request: web.Request, user: users.User) -> None:
    settings = request.app[SETTINGS]
    async with request.app[PG].acquire() as conn:
        token = await users.create_email_verification(
            conn, user.id, timedelta(hours=settings.email_token_ttl_hours)
        )
    await send_mail(
        request,
        user.email,
        "Confirm your email address",
        f"Confirm your LinkRift account by POSTing this token to /api/v1/auth/verify-email:\n\n"
        f"{token}\n\n{settings.public_base_url}/app/verify-email?token={token}\n",
    )


async def send_mail(request: web.Request, to: str, subject: str, body: str) -> None:
    try:
        await request.app[MAILER].send(to, subject, body)
    except Exception as exc:
        log.warning("mail delivery failed to=%s error=%s", to, exc)


async def mail_password_reset(request: web.Request, email: str, compose: Callable[[str, int], str]) -> None:
    """Mail a password-reset token to the account of `email`, if there is one (the API's and the
    web app's "forgot password"; neither answer says which). `compose(token, ttl_minutes)` writes
    the mail's body."""
    ttl_minutes = request.app[SETTINGS].password_reset_ttl_minutes
    async with request.app[PG].acquire() as conn:
        found = await users.create_password_reset(conn, email, timedelta(minutes=ttl_minutes))
    if found is not None:
        user, token = found
        await send_mail(request, user.email, "Reset your password", compose(token, ttl_minutes))


async def current_user(request: web.Request) -> users.User:
    """The signed-in person (a JWT session, not an API key)."""
    claims = await signed_in_user(request)
    async with request.app[PG].acquire() as conn:
        return await users.get_user(conn, claims.user_id)


@routes.post("/api/v1/auth/signup")
async def signup(request: web.Request) -> web.Response:
    body = parse_model(SignUp, await read_json(request))
    async with request.app[PG].acquire() as conn:
        user, workspace_id = await users.sign_up(conn, body.email, body.password, body.name)
        tokens = await request.app[SESSIONS].start(
            conn, user.id, _client_ip(request), request.headers.get("User-Agent")
        )
    await _send_verification(request, user)
    return _token_response(request, tokens, 201, user=user.to_json(), workspace_id=workspace_id)


@routes.post("/api/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    body = parse_model(Login, await read_json(request))
    async with request.app[PG].acquire() as conn:
        user = await users.authenticate(
            conn, request.app[SECRETS], body.email, body.password, body.totp_code, body.recovery_code
        )
        tokens = await request.app[SESSIONS].start(
            conn, user.id, _client_ip(request), request.headers.get("User-Agent")
        )
    return _token_response(request, tokens, user=user.to_json())


@routes.post("/api/v1/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    raw = await request.read()
    body = parse_model(RefreshBody, await read_json(request)) if raw.strip() else RefreshBody()
    token = body.refresh_token or request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise Unauthorized("refresh_token is required", field="refresh_token")
    async with request.app[PG].acquire() as conn:
        tokens = await request.app[SESSIONS].refresh(conn, token, _client_ip(request))
    return _token_response(request, tokens)


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    claims = await signed_in_user(request)
    async with request.app[PG].acquire() as conn:
        await request.app[SESSIONS].revoke(conn, claims.user_id, claims.session_id, "logout")
    resp = web.Response(status=204)
    resp.del_cookie(REFRESH_COOKIE, path=_COOKIE_PATH)
    return resp


@routes.post("/api/v1/auth/verify-email")
async def verify_email(request: web.Request) -> web.Response:
    body = parse_model(TokenBody, await read_json(request))
    async with request.app[PG].acquire() as conn:
        await users.verify_email(conn, body.token)
    return web.Response(status=204)


@routes.post("/api/v1/auth/verify-email/resend")
async def resend_verification(request: web.Request) -> web.Response:
    user = await current_user(request)
    if not user.email_verified:
        await _send_verification(request, user)
    return web.Response(status=202)


@routes.post("/api/v1/auth/password/forgot")
async def forgot_password(request: web.Request) -> web.Response:
    """Always 202: the answer never says whether the email has an account."""
    body = parse_model(ForgotPassword, await read_json(request))
    base_url = request.app[SETTINGS].public_base_url
    await mail_password_reset(
        request,
        body.email,
        lambda token, minutes: (
            f"Reset your LinkRift password by POSTing this token with a new password to "
            f"/api/v1/auth/password/reset (valid {minutes} minutes):\n\n"
            f"{token}\n\n{base_url}/app/reset-password?token={token}\n"
        ),
    )
    return web.Response(status=202)


@routes.post("/api/v1/auth/password/reset")
async def reset_password(request: web.Request) -> web.Response:
    body = parse_model(ResetPassword, await read_json(request))
    async with request.app[PG].acquire() as conn:
        user_id = await users.reset_password(conn, body.token, body.password)
        await request.app[SESSIONS].revoke_all(conn, user_id, "password_reset")
    return web.Response(status=204)


@routes.get("/api/v1/users/me")
async def me(request: web.Request) -> web.Response:
    return json_response((await current_user(request)).to_json())


@routes.patch("/api/v1/users/me")
async def update_me(request: web.Request) -> web.Response:
    claims = await signed_in_user(request)
    body = parse_model(ProfileUpdate, await read_json(request))
    async with request.app[PG].acquire() as conn:
        user = await users.update_profile(conn, claims.user_id, body.name)
    return json_response(user.to_json())


@routes.post("/api/v1/users/me/password")
async def change_password(request: web.Request) -> web.Response:
    """Change the password; every other session of the user is signed out."""
    claims = await signed_in_user(request)
    body = parse_model(PasswordChange, await read_json(request))
    async with request.app[PG].acquire() as conn:
        await users.change_password(conn, claims.user_id, body.current_password, body.new_password)
        await request.app[SESSIONS].revoke_all(conn, claims.user_id, "password_changed", claims.session_id)
    return web.Response(status=204)


@routes.delete("/api/v1/users/me")
async def delete_me(request: web.Request) -> web.Response:
    claims = await signed_in_user(request)
    body = parse_model(PasswordConfirm, await read_json(request))
    async with request.app[PG].acquire() as conn:
        await users.soft_delete(conn, claims.user_id, body.password)
        await request.app[SESSIONS].revoke_all(conn, claims.user_id, "account_deleted")
    return web.Response(status=204)


@routes.get("/api/v1/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    claims = await signed_in_user(request)
    async with request.app[PG].acquire() as conn:
        items = await request.app[SESSIONS].list_active(conn, claims.user_id)
    for item in items:
        item["current"] = item["id"] == claims.session_id
    return list_response(items)


@routes.delete("/api/v1/sessions/{session_id}")
async def revoke_session(request: web.Request) -> web.Response:
    claims = await signed_in_user(request)
    session_id = parse_uuid(request.match_info["session_id"], "session_id")
    async with request.app[PG].acquire() as conn:
        await request.app[SESSIONS].revoke(conn, claims.user_id, session_id, "revoked_by_user")
    return web.Response(status=204)


@routes.delete("/api/v1/sessions")
async def revoke_other_sessions(request: web.Request) -> web.Response:
    claims = await signed_in_user(request)
    async with request.app[PG].acquire() as conn:
        count = await request.app[SESSIONS].revoke_all(
            conn, claims.user_id, "revoked_by_user", claims.session_id
        )
    return json_response({"revoked": count})


@routes.post("/api/v1/users/me/2fa/setup")
async def totp_setup(request: web.Request) -> web.Response:
    user = await current_user(request)
    async with request.app[PG].acquire() as conn:
        enrolment = await users.begin_totp(conn, request.app[SECRETS], user)
    return json_response(
        {"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri, "qr_svg": enrolment.qr_svg}
    )


@routes.post("/api/v1/users/me/2fa/enable")
async def totp_enable(request: web.Request) -> web.Response:
    """Turn 2FA on with a first valid code; answers the recovery codes (shown this once)."""
    claims = await signed_in_user(request)
    body = parse_model(TotpCode, await read_json(request))
    async with request.app[PG].acquire() as conn:
        codes = await users.enable_totp(conn, request.app[SECRETS], claims.user_id, body.code)
        await request.app[SESSIONS].revoke_all(conn, claims.user_id, "two_factor_enabled", claims.session_id)
    return json_response({"recovery_codes": codes})


@routes.post("/api/v1/users/me/2fa/disable")
async def totp_disable(request: web.Request) -> web.Response:
    claims = await signed_in_user(request)
    body = parse_model(PasswordConfirm, await read_json(request))
    async with request.app[PG].acquire() as conn:
        await users.disable_totp(conn, claims.user_id, body.password)
    return web.Response(status=204)
