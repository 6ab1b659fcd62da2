"""Account pages: sign up, log in (with the TOTP step), log out, verify email, forgot/reset
password, accept an invitation, workspace switch. Email links land here (/app/verify-email,
/app/reset-password, /app/invitations/accept; the bare paths of older emails redirect)."""

from __future__ import annotations

import base64
import secrets
from urllib.parse import quote

import orjson
from aiohttp import web

from api.accounts import SECRETS, SESSIONS, _send_verification, mail_password_reset
from api.audit import audit_context
from api.ratelimit import limit_ip
from api.state import KEYS, PG, REDIS, SETTINGS
from engine.accounts import users, workspaces
from engine.accounts.users import TwoFactorRequired
from engine.errors import LinkRiftError, Unauthorized, ValidationFailed
from web.core import (
    PREFIX,
    SESSION_COOKIE,
    WORKSPACE_COOKIE,
    Ctx,
    PageRedirect,
    form_data,
    page,
    render,
    safe_next,
    see_other,
    set_cookie,
    uuid_param,
)

routes = web.RouteTableDef()
_PENDING_TTL = 300  # seconds a password-checked sign-in waits for its TOTP code


async def _rate_limit(request: web.Request, endpoint: str) -> None:
    await limit_ip(request, f"web:{endpoint}", request.app[SETTINGS].rate_limit_auth_per_minute)


async def _start_session(request: web.Request, user_id: str, next_url: str) -> web.Response:
    async with request.app[PG].acquire() as conn:
        tokens = await request.app[SESSIONS].start(
            conn, user_id, request.remote, request.headers.get("User-Agent")
        )
    resp = see_other(request, safe_next(next_url))
    set_cookie(
        request,
        resp,
        SESSION_COOKIE,
        tokens.refresh_token,
        request.app[SETTINGS].refresh_token_ttl_days * 86400,
    )
    return resp


def _pending_key(request: web.Request, token: str) -> str:
    return f"{request.app[KEYS].namespace}:web:2fa:{token}"


@routes.get(PREFIX + "/login")
@page(signed_in=False)
async def login_form(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    if ctx.user is not None:
        raise PageRedirect(safe_next(request.query.get("next")))
    return render(request, "account/login.html", {"next": request.query.get("next", ""), "form": {}})


@routes.post(PREFIX + "/login")
@page(signed_in=False)
async def login(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    await _rate_limit(request, "login")
    form = await form_data(request)
    next_url = form.get("next", "")
    box = request.app[SECRETS]
    pending = form.get("pending", "")
    try:
        if pending:
            raw = await request.app[REDIS].get(_pending_key(request, pending))
            if raw is None:
                pending = ""
                raise Unauthorized("that sign-in took too long; please enter your password again")
            saved = orjson.loads(raw)
            email, password = saved["email"], box.decrypt(saved["password"])
        else:
            email, password = form.get("email", ""), form.get("password", "")
        code = form.get("totp_code", "").strip() or None
        recovery = form.get("recovery_code", "").strip() or None
        async with request.app[PG].acquire() as conn:
            user = await users.authenticate(conn, box, email, password, code, recovery)
    except TwoFactorRequired:
        token = pending or secrets.token_urlsafe(24)
        await request.app[REDIS].set(
            _pending_key(request, token),
            orjson.dumps({"email": email, "password": box.encrypt(password)}),
            ex=_PENDING_TTL,
        )
        return render(
            request,
            "account/login_2fa.html",
            {"pending": token, "next": next_url, "error": "That code didn't work." if pending else None},
            status=401 if pending else 200,
        )
    except Unauthorized as exc:
        if pending:  # a wrong code: ask again, the password step stays done
            return render(
                request,
                "account/login_2fa.html",
                {"pending": pending, "next": next_url, "error": "That code didn't work."},
                status=401,
            )
        return render(
            request,
            "account/login.html",
            {"next": next_url, "form": {"email": form.get("email", "")}, "error": exc.message},
            status=401,
        )
    if pending:
        await request.app[REDIS].delete(_pending_key(request, pending))
    return await _start_session(request, user.id, next_url)


@routes.post(PREFIX + "/logout")
@page()
async def logout(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.user is not None and ctx.session_id is not None
    async with request.app[PG].acquire() as conn:
        await request.app[SESSIONS].revoke(conn, ctx.user.id, ctx.session_id, "logout")
    resp = see_other(request, PREFIX + "/login")
    resp.del_cookie(SESSION_COOKIE, path=PREFIX)
    return resp


@routes.get(PREFIX + "/signup")
@page(signed_in=False)
async def signup_form(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return render(request, "account/signup.html", {"next": request.query.get("next", ""), "form": {}})


@routes.post(PREFIX + "/signup")
@page(signed_in=False)
async def signup(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    await _rate_limit(request, "signup")
    form = await form_data(request)
    try:
        if len(form.get("name", "")) > 255 or len(form.get("email", "")) > 255:
            raise ValidationFailed("must be at most 255 characters", field="name")
        async with request.app[PG].acquire() as conn:
            user, _ = await users.sign_up(
                conn, form.get("email", ""), form.get("password", ""), form.get("name", "")
            )
    except LinkRiftError as exc:
        return render(
            request,
            "account/signup.html",
            {"next": form.get("next", ""), "form": form, "errors": {exc.field or "form": exc.message}},
            status=exc.status,
        )
    await _send_verification(request, user)
    return await _start_session(request, user.id, form.get("next") or PREFIX + "/links?welcome=1")


def _token_form(request: web.Request, template: str, **extra: str) -> web.Response:
    """A page that a mailed link opens (email verification, password reset, invitation): the
    link's `?token=` goes into the page's form, to be posted by a button."""
    return render(request, template, {"token": request.query.get("token", ""), **extra})


def _token_refused(request: web.Request, template: str, exc: LinkRiftError, token: str = "") -> web.Response:
    """A token page saying why its token failed."""
    return render(request, template, {"token": token, "error": exc.message}, status=exc.status)


def _token_form_page(path: str, template: str) -> None:
    """GET `path`: the page of a mailed link, a form with the link's token and a button. A button,
    not an automatic GET: mail scanners that open links must not use up the token."""

    @routes.get(PREFIX + path)
    @page(signed_in=False)
    async def token_form(request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return _token_form(request, template)


_token_form_page("/verify-email", "account/verify_email.html")
_token_form_page("/reset-password", "account/reset.html")


@routes.post(PREFIX + "/verify-email")
@page(signed_in=False)
async def verify_email(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    try:
        async with request.app[PG].acquire() as conn:
            await users.verify_email(conn, form.get("token", "")[:200])
    except LinkRiftError as exc:
        return _token_refused(request, "account/verify_email.html", exc)
    return render(request, "account/verify_email.html", {"verified": True})


@routes.post(PREFIX + "/verify-email/resend")
@page()
async def resend_verification(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.user is not None
    await _rate_limit(request, "resend")
    if not ctx.user.email_verified:
        await _send_verification(request, ctx.user)
    return render(request, "partials/notice.html", {"message": f"We sent a new link to {ctx.user.email}."})


@routes.get(PREFIX + "/forgot-password")
@page(signed_in=False)
async def forgot_form(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return render(request, "account/forgot.html", {})


@routes.post(PREFIX + "/forgot-password")
@page(signed_in=False)
async def forgot(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    await _rate_limit(request, "forgot")
    form = await form_data(request)
    base_url = request.app[SETTINGS].public_base_url
    email = form.get("email", "")[:255]
    await mail_password_reset(
        request,
        email,
        lambda token, minutes: (
            f"Choose a new LinkRift password (valid {minutes} minutes):\n\n"
            f"{base_url}/app/reset-password?token={token}\n"
        ),
    )
    # The same answer either way: the page never says whether the email has an account.
    return render(request, "account/forgot.html", {"sent": True, "email": email})


@routes.post(PREFIX + "/reset-password")
@page(signed_in=False)
async def reset(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    await _rate_limit(request, "reset")
    form = await form_data(request)
    token = form.get("token", "")[:200]
    try:
        async with request.app[PG].acquire() as conn:
            user_id = await users.reset_password(conn, token, form.get("password", ""))
            await request.app[SESSIONS].revoke_all(conn, user_id, "password_reset")
    except LinkRiftError as exc:
        return _token_refused(request, "account/reset.html", exc, token)
    resp = render(request, "account/reset.html", {"done": True})
    resp.del_cookie(SESSION_COOKIE, path=PREFIX)
    return resp


@routes.get(PREFIX + "/invitations/accept")
@page(signed_in=False)
async def invitation_form(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    if ctx.user is None:
        back = quote(f"{PREFIX}/invitations/accept?token={request.query.get('token', '')}", safe="")
        return _token_form(request, "account/invitation.html", back=back)
    return _token_form(request, "account/invitation.html")


@routes.post(PREFIX + "/invitations/accept")
@page()
async def accept_invitation(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.user is not None
    form = await form_data(request)
    try:
        async with request.app[PG].acquire() as conn:
            ws = await workspaces.accept_invitation(
                conn, audit_context(request, user_id=ctx.user.id), ctx.user.email, form.get("token", "")[:200]
            )
    except LinkRiftError as exc:
        return _token_refused(request, "account/invitation.html", exc)
    resp = see_other(request, PREFIX + "/links")
    set_cookie(request, resp, WORKSPACE_COOKIE, ws, 365 * 86400)
    return resp


@routes.post(PREFIX + "/workspace/switch")
@page()
async def switch_workspace(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    wanted = form.get("workspace_id", "")
    if not any(w["id"] == wanted for w in ctx.workspaces):
        raise ValidationFailed("choose one of your workspaces", field="workspace_id")
    resp = see_other(request, PREFIX + "/links")
    set_cookie(request, resp, WORKSPACE_COOKIE, wanted, 365 * 86400)
    return resp


async def _email_alias(request: web.Request) -> web.Response:
    """Links in emails sent before the web app existed pointed at the bare paths."""
    target = f"{PREFIX}{request.path}"
    if request.query_string:
        target += "?" + request.query_string
    raise web.HTTPFound(target)


async def _root(request: web.Request) -> web.Response:
    raise web.HTTPFound(PREFIX + "/links")


def add_aliases(app: web.Application) -> None:
    for path in ("/verify-email", "/reset-password", "/invitations/accept"):
        app.router.add_get(path, _email_alias)
    app.router.add_get(PREFIX, _root)
    app.router.add_get(PREFIX + "/", _root)


# --- the signed-in person's own account -------------------------------------------------------------


async def _account_context(request: web.Request, ctx: Ctx, **extra: object) -> dict[str, object]:
    assert ctx.user is not None
    async with request.app[PG].acquire() as conn:
        sessions = await request.app[SESSIONS].list_active(conn, ctx.user.id)
    for s in sessions:
        s["current"] = s["id"] == ctx.session_id
    return {"sessions": sessions, "errors": {}, **extra}


@routes.get(PREFIX + "/account")
@page()
async def account(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    notice = {"saved": "Saved.", "password": "Password changed; your other sessions were signed out.",
              "2fa-off": "Two-factor authentication is off."}.get(request.query.get("done", ""))  # fmt: skip
    return render(request, "account/settings.html", await _account_context(request, ctx, notice=notice))


@routes.post(PREFIX + "/account/profile")
@page()
async def update_profile(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.user is not None
    form = await form_data(request)
    try:
        async with request.app[PG].acquire() as conn:
            await users.update_profile(conn, ctx.user.id, form.get("name", "")[:255])
    except LinkRiftError as exc:
        context = await _account_context(request, ctx, errors={"name": exc.message})
        return render(request, "account/settings.html", context, status=exc.status)
    return see_other(request, PREFIX + "/account?done=saved")


@routes.post(PREFIX + "/account/password")
@page()
async def change_password(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.user is not None
    await _rate_limit(request, "password")
    form = await form_data(request)
    try:
        async with request.app[PG].acquire() as conn:
            await users.change_password(
                conn, ctx.user.id, form.get("current_password", ""), form.get("new_password", "")
            )
            await request.app[SESSIONS].revoke_all(conn, ctx.user.id, "password_changed", ctx.session_id)
    except LinkRiftError as exc:
        field = "current_password" if isinstance(exc, Unauthorized) else "new_password"
        context = await _account_context(request, ctx, errors={field: exc.message})
        return render(request, "account/settings.html", context, status=exc.status)
    return see_other(request, PREFIX + "/account?done=password")


@routes.post(PREFIX + "/account/sessions/{session_id}/revoke")
@page()
async def revoke_session(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.user is not None
    session_id = uuid_param(request, "session_id")
    async with request.app[PG].acquire() as conn:
        await request.app[SESSIONS].revoke(conn, ctx.user.id, session_id, "revoked_by_user")
    if session_id == ctx.session_id:
        resp = see_other(request, PREFIX + "/login")
        resp.del_cookie(SESSION_COOKIE, path=PREFIX)
        return resp
    return see_other(request, PREFIX + "/account#sessions")


@routes.post(PREFIX + "/account/2fa/setup")
@page()
async def totp_setup(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.user is not None
    async with request.app[PG].acquire() as conn:
        enrolment = await users.begin_totp(conn, request.app[SECRETS], ctx.user)
    qr = "data:image/svg+xml;base64," + base64.b64encode(enrolment.qr_svg.encode()).decode()
    return render(
        request, "account/settings.html", await _account_context(request, ctx, enrolment=enrolment, qr=qr)
    )


@routes.post(PREFIX + "/account/2fa/enable")
@page()
async def totp_enable(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """Turn 2FA on with a first code; the recovery codes are on this page only, this once."""
    assert ctx.user is not None
    form = await form_data(request)
    try:
        async with request.app[PG].acquire() as conn:
            codes = await users.enable_totp(
                conn, request.app[SECRETS], ctx.user.id, form.get("code", "")[:10]
            )
            await request.app[SESSIONS].revoke_all(conn, ctx.user.id, "two_factor_enabled", ctx.session_id)
    except LinkRiftError as exc:
        context = await _account_context(
            request, ctx, errors={"code": exc.message + ". Start the setup again."}
        )
        return render(request, "account/settings.html", context, status=exc.status)
    ctx.user = await _reload(request, ctx.user.id)
    return render(
        request, "account/settings.html", await _account_context(request, ctx, recovery_codes=codes)
    )


@routes.post(PREFIX + "/account/2fa/disable")
@page()
async def totp_disable(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.user is not None
    form = await form_data(request)
    try:
        async with request.app[PG].acquire() as conn:
            await users.disable_totp(conn, ctx.user.id, form.get("password", ""))
    except LinkRiftError as exc:
        context = await _account_context(request, ctx, errors={"disable_password": exc.message})
        return render(request, "account/settings.html", context, status=exc.status)
    return see_other(request, PREFIX + "/account?done=2fa-off")


async def _reload(request: web.Request, user_id: str) -> users.User:
    async with request.app[PG].acquire() as conn:
        return await users.get_user(conn, user_id)
