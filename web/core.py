"""What every web app page shares: the browser session (cookie → sessions table), the workspace the
person is working in, CSRF, the security headers and rendering (HTML errors, never JSON).

A page handler is wrapped by `page(...)`: it gets a `Ctx` with the signed-in user, their role in the
current workspace and the CSRF token. Permissions are the engine's table (`authorize`), exactly as
the API checks them: a viewer's forged POST gets the same 403 the API would give.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web

from api.audit import audit_context
from api.state import PG, SETTINGS
from engine.accounts.repository import Principal, user_membership
from engine.accounts.sessions import browser_session
from engine.accounts.users import User, get_user
from engine.accounts.workspaces import LINK_WRITES, check_links_writable, list_workspaces
from engine.audit import AuditContext
from engine.auth.permissions import Action, Role, authorize, can
from engine.errors import Forbidden, LinkRiftError, NotFound, Unauthorized, ValidationFailed
from engine.records import uuid_or_none

PREFIX = "/app"
SESSION_COOKIE = "lr_session"
WORKSPACE_COOKIE = "lr_workspace"
ANON_COOKIE = "lr_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@dataclass(slots=True)
class Ctx:
    """The person on this request (None on public pages), their workspace and role, and CSRF."""

    csrf: str
    user: User | None = None
    session_id: str | None = None
    workspace_id: str | None = None
    role: Role | None = None
    plan: str = "free"
    workspaces: list[dict[str, Any]] = field(default_factory=list)
    new_anon: str | None = None  # an anonymous CSRF binding to set as a cookie on the response

    @property
    def principal(self) -> Principal:
        if self.user is None or self.workspace_id is None or self.role is None:
            raise Unauthorized("sign in first")
        return Principal(
            self.user.id, self.workspace_id, self.role, None, session_id=self.session_id, plan=self.plan
        )

    def can(self, action: str) -> bool:
        return self.role is not None and can(self.role, Action(action))

    @property
    def workspace(self) -> dict[str, Any] | None:
        return next((w for w in self.workspaces if w["id"] == self.workspace_id), None)


CTX = web.RequestKey("web_ctx", Ctx)


class PageRedirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def uuid_param(request: web.Request, name: str) -> str:
    """A UUID from the URL; anything else is a plain 404 (ids of other tenants stay unconfirmed)."""
    if (value := uuid_or_none(request.match_info[name])) is None:
        raise NotFound("not found", field=name)
    return value


def csrf_token(secret: str, binding: str) -> str:
    return hmac.new(secret.encode(), f"csrf|{binding}".encode(), hashlib.sha256).hexdigest()


def secure_cookies(request: web.Request) -> bool:
    return request.secure or request.app[SETTINGS].env == "production"


def set_cookie(request: web.Request, resp: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    resp.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(request),
        max_age=max_age,
    )


def safe_next(raw: str | None) -> str:
    """Only a local /app path: an open redirect through ?next= is not possible."""
    if raw and raw.startswith(PREFIX + "/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return PREFIX + "/links"


async def load_ctx(request: web.Request) -> Ctx:
    settings = request.app[SETTINGS]
    token = request.cookies.get(SESSION_COOKIE)
    found = None
    user: User | None = None
    if token:
        async with request.app[PG].acquire() as conn:
            found = await browser_session(conn, token)
            if found is not None:
                user = await get_user(conn, found[1])
    if found is None or user is None:
        anon = request.cookies.get(ANON_COOKIE)
        new_anon = None
        if not anon or len(anon) > 100:
            anon = new_anon = secrets.token_urlsafe(24)
        return Ctx(csrf=csrf_token(settings.secret_key, "anon|" + anon), new_anon=new_anon)
    session_id, user_id = found
    ctx = Ctx(csrf=csrf_token(settings.secret_key, "session|" + session_id), user=user, session_id=session_id)
    wanted = request.cookies.get(WORKSPACE_COOKIE)
    wanted = uuid_or_none(wanted) if wanted else None
    async with request.app[PG].acquire() as conn:
        membership = await user_membership(conn, user_id, wanted)
        if membership is None and wanted is not None:
            membership = await user_membership(conn, user_id, None)
        ctx.workspaces = await list_workspaces(conn, user_id)
    if membership is not None:
        ctx.workspace_id, role, ctx.plan = membership
        ctx.role = Role(role)
    return ctx


async def check_csrf(request: web.Request, ctx: Ctx) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if not sent and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, ctx.csrf):
        raise Forbidden("the form has expired or did not come from this site; reload the page and try again")


Handler = Callable[[web.Request, Ctx], Awaitable[web.StreamResponse]]


def page(
    *, signed_in: bool = True, action: Action | None = None
) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a page handler: session, CSRF on state changes, permission, HTML errors."""

    def wrap(fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            ctx = await load_ctx(request)
            request[CTX] = ctx
            try:
                if request.method not in SAFE_METHODS:
                    await check_csrf(request, ctx)
                if signed_in and ctx.user is None:
                    raise PageRedirect(f"{PREFIX}/login?next={quote(request.path_qs, safe='/')}")
                if signed_in and ctx.workspace_id is None:
                    raise NotFound("you are not a member of any workspace")
                if action is not None:
                    authorize(ctx.principal.role, None, action)
                    if action in LINK_WRITES and request.method not in SAFE_METHODS:
                        async with request.app[PG].acquire() as conn:
                            await check_links_writable(conn, ctx.principal.workspace_id)
                resp = await fn(request, ctx)
            except PageRedirect as redirect:
                resp = see_other(request, redirect.location)
            except LinkRiftError as exc:
                resp = error_page(request, ctx, exc)
            if ctx.new_anon:
                set_cookie(request, resp, ANON_COOKIE, ctx.new_anon, 86400)
            return resp

        handler.__name__ = fn.__name__
        handler.__doc__ = fn.__doc__
        return handler

    return wrap


def see_other(request: web.Request, location: str) -> web.Response:
    """A redirect after a POST; an htmx request gets HX-Redirect so the whole page changes."""
    if request.headers.get("HX-Request"):
        return web.Response(status=204, headers={"HX-Redirect": location})
    return web.Response(status=303, headers={"Location": location})


_FRIENDLY = {
    401: "Please sign in to continue.",
    403: "You don't have permission to do that in this workspace.",
    404: "We couldn't find that page. It may have been deleted, or it belongs to a workspace you're not in.",
    429: "Too many attempts. Please wait a minute and try again.",
}


def error_page(request: web.Request, ctx: Ctx, exc: LinkRiftError) -> web.Response:
    status = exc.status
    if request.headers.get("HX-Request"):
        # A fragment for the page's error region; htmx swaps 4xx bodies via the response-targets
        # rule in app.js.
        return render(
            request,
            "partials/error.html",
            {"message": exc.message, "status": status, "field": exc.field},
            status=status,
        )
    heading = {403: "Not allowed", 404: "Not found", 429: "Slow down"}.get(status, "Something went wrong")
    message = exc.message if isinstance(exc, ValidationFailed) or status == 403 else _FRIENDLY.get(status)
    return render(
        request,
        "error.html",
        {"heading": heading, "message": message or exc.message, "status": status},
        status=status,
    )


def render(
    request: web.Request, template: str, context: Mapping[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    data = {"ctx": request.get(CTX), "request": request, **(context or {})}
    resp = aiohttp_jinja2.render_template(template, request, data, status=status)
    return resp


def with_blank_form(context: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A list page's context with its create form empty and no errors; `extra` overrides them (the
    form as typed and its errors, after a refused submit) or adds to them."""
    return {**context, "errors": {}, "form": {}, **extra}


def audit(request: web.Request, ctx: Ctx) -> AuditContext:
    return audit_context(request, ctx.principal)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every /app answer carries the CSP and friends."""
    if not request.path.startswith(PREFIX):
        return
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith(PREFIX + "/static/"):
        headers.setdefault("Cache-Control", "no-store")


async def form_data(request: web.Request) -> dict[str, str]:
    """The submitted form as plain strings (files are left to the handler); NUL is refused."""
    form = await request.post()
    out: dict[str, str] = {}
    for key, value in form.items():
        if isinstance(value, str):
            if "\x00" in value:
                raise ValidationFailed(f"{key} must not contain NUL characters", field=key)
            out.setdefault(key, value)
    return out
