"""The OpenAPI 3.1 description of every route (`/openapi.json`) and a self-contained docs page (`/docs`).

Paths come from walking the app's router, so a route cannot be left out silently: OPERATIONS says
what each (method, path template) takes and answers, and `missing_operations` names any route it
does not cover (a unit test keeps that list empty). Request schemas are the handlers' own pydantic
models; every 4xx answer of the JSON api references the one error schema.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel

from api import accounts, billing, bio, domains, links, qr, rules, tags, webhooks, workspaces
from api.errors import json_response
from api.state import SETTINGS
from engine.analytics.queries import DEFAULT_EXPORT_ROWS, DEFAULT_LIMIT, INTERVALS, MAX_EXPORT_ROWS, MAX_LIMIT
from engine.auth.api_key_tokens import SCOPES
from engine.links.importers import FORMATS
from engine.links.search import MAX_LIMIT as LINKS_MAX_LIMIT
from engine.links.search import SORT_KEYS
from engine.links.service import MAX_BULK

routes = web.RouteTableDef()
SPEC = web.AppKey("openapi_spec", dict)
ERROR_REF = {"$ref": "#/components/schemas/Error"}
_REF = "#/components/schemas/{model}"

_ERROR_TEXT = {
    400: "Bad request",
    401: "Missing or invalid credentials",
    402: "Plan limit reached",
    403: "Not allowed (role, scope, an API key where a signed-in session is needed, or `workspace_suspended`)",
    404: "Not found (or not in the caller's workspace)",
    409: "Conflict with an existing resource",
    410: "Gone",
    413: "Request body too large",
    422: "Invalid input; `error.field` names the field",
    429: "Rate limited; see Retry-After",
}


class Auth(StrEnum):
    KEY = "key"  # an API key `lr_...` or a session's JWT access token
    SESSION = "session"  # a JWT access token only: API keys get 403
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    location: str = "query"
    required: bool = False

    def to_openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.location, "schema": self.schema}
        if self.description:
            out["description"] = self.description
        if self.required:
            out["required"] = True
        return out


@dataclass(frozen=True, slots=True)
class Op:
    """What one operation takes and answers (beyond its path parameters, which the path gives)."""

    summary: str
    status: int = 200
    result: dict[str, Any] | None = None  # JSON schema of the success body; None: no body
    media: str = "application/json"  # of the success body
    body: type[BaseModel] | None = None  # JSON request body
    body_media: dict[str, dict[str, Any]] | None = None  # other request bodies: media type → schema
    body_required: bool = True
    query: tuple[Param, ...] = ()
    headers: tuple[Param, ...] = ()
    auth: Auth = Auth.KEY
    errors: tuple[int, ...] = ()  # documented 4xx beyond those implied by auth, body and path
    responses: dict[int, dict[str, Any]] = field(default_factory=dict)  # other answers, verbatim
    description: str = ""


# --- schemas of answers ----------------------------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(model=name)}


def _obj(*required: str, **properties: dict[str, Any]) -> dict[str, Any]:
    """An object schema that names its required keys; further keys are allowed."""
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


UUID = {"type": "string", "format": "uuid"}
TIME = {"type": "string", "format": "date-time"}
STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
CURSOR = {"type": ["string", "null"]}

RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string", "description": "machine-readable, e.g. validation_failed"},
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"], "description": "the input at fault, if any"},
                },
            }
        },
    },
    "Tag": _obj("id", "name", "color", id=UUID, name=STR, color=STR, link_count=INT),
    "Link": _obj(
        "id",
        "short_code",
        "url",
        "short_url",
        "tags",
        id=UUID,
        short_code=STR,
        url=STR,
        short_url=STR,
        title=NULLABLE_STR,
        is_active=BOOL,
        total_clicks={**INT, "description": "tracked_clicks + imported_clicks"},
        tracked_clicks={**INT, "description": "clicks LinkRift counted"},
        imported_clicks={**INT, "description": "the source's count, from a CSV import"},
        unique_clicks=INT,
        created_at=TIME,
        imported_at=NULLABLE_TIME,
        expires_at=NULLABLE_TIME,
        tags=_array(_ref("Tag")),
    ),
    "LinkPage": _obj("data", "next_cursor", data=_array(_ref("Link")), next_cursor=CURSOR, total_count=INT),
    "BulkResult": _obj(
        "created", "failed", "results", created=INT, failed=INT, results=_array(_obj("index", "status"))
    ),
    "ImportReport": _obj(),
    "Rule": _obj(
        "id", "link_id", "rule_type", id=UUID, link_id=UUID, rule_type=STR, priority=INT, is_active=BOOL
    ),
    "Domain": _obj(
        "id",
        "domain",
        "verification",
        "routing",
        id=UUID,
        domain=STR,
        is_verified=BOOL,
        verification=_obj("type", "name"),
        routing={
            **_array(
                _obj("type", "name", "value", type={"enum": ["CNAME", "A", "AAAA"]}, name=STR, value=STR)
            ),
            "description": "publish one: a CNAME to the platform's host, or (apex domains) an A record;"
            " an A or AAAA record, never a CNAME, when the platform's host is an IP address",
        },
    ),
    "QrCode": _obj(
        "id",
        "qr_type",
        "content",
        id=UUID,
        qr_type={"enum": ["dynamic", "static"]},
        content=STR,
        has_logo=BOOL,
    ),
    "BioPage": _obj("id", "slug", "url", id=UUID, slug=STR, url=STR, title=STR),
    "BioLink": _obj("id", "title", "url", id=UUID, title=STR, url=STR),
    "BioTheme": _obj("id", "name", id=UUID, name=STR),
    "Webhook": _obj(
        "id",
        "url",
        "events",
        "is_active",
        id=UUID,
        workspace_id=UUID,
        url=STR,
        events=_array(STR),
        is_active=BOOL,
        failure_count=INT,
    ),
    "Delivery": _obj(
        "id",
        "webhook_id",
        "event_type",
        "status",
        id=UUID,
        webhook_id=UUID,
        event_type=STR,
        status=STR,
        attempt=INT,
    ),
    "Tokens": _obj(
        "token_type",
        "access_token",
        "expires_in",
        "refresh_token",
        "session_id",
        token_type={"const": "Bearer"},
        access_token=STR,
        expires_in=INT,
        refresh_token=STR,
        session_id=UUID,
    ),
    "User": _obj(
        "id", "email", "name", id=UUID, email=STR, name=STR, email_verified=BOOL, two_factor_enabled=BOOL
    ),
    "Workspace": _obj(
        "id",
        "name",
        "slug",
        "plan",
        id=UUID,
        name=STR,
        slug=STR,
        owner_id=UUID,
        plan=STR,
        role=STR,
        suspended_at=NULLABLE_TIME,  # set by an operator (`linkrift workspace suspend`)
    ),
    "ApiKey": _obj(
        "id", "name", "scopes", id=UUID, name=STR, scopes=_array({"type": "string", "enum": sorted(SCOPES)})
    ),
    "Analytics": _obj("source", source={"enum": ["clickhouse", "postgres"]}),
    "LinkAnalytics": _obj(
        "source",
        "link_id",
        "utm",
        "total_clicks",
        "unique_clicks",
        source={"enum": ["clickhouse", "postgres"]},
        link_id=UUID,
        utm=_ref("LinkUtm"),
        total_clicks=INT,
        unique_clicks=INT,
        imported_clicks=INT,
    ),
    "LinkUtm": _obj(
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        utm_source=NULLABLE_STR,
        utm_medium=NULLABLE_STR,
        utm_campaign=NULLABLE_STR,
        utm_term=NULLABLE_STR,
        utm_content=NULLABLE_STR,
    ),
    "AbVariant": _obj(
        "id",
        "clicks",
        "unique_visitors",
        "share",
        "returning_visitors",
        "return_rate",
        "probability_best",
        id=STR,
        url=NULLABLE_STR,
        weight={"type": ["integer", "null"]},
        expected_share={"type": ["number", "null"]},
        clicks=INT,
        unique_visitors=INT,
        share={"type": "number"},
        returning_visitors=INT,
        return_rate={"type": "number"},
        probability_best={"type": ["number", "null"]},
    ),
    "AbTest": _obj(
        "rule_id",
        "variants",
        "leader",
        "confidence",
        "significant",
        rule_id=UUID,
        is_active=BOOL,
        deleted=BOOL,
        clicks=INT,
        unique_visitors=INT,
        variants=_array(_ref("AbVariant")),
        leader=NULLABLE_STR,
        confidence={"type": ["number", "null"]},
        significant=BOOL,
    ),
    "AbReport": _obj(
        "link_id",
        "from",
        "to",
        "tz",
        "measure",
        "tests",
        link_id=UUID,
        to=TIME,
        tz=STR,
        measure={"const": "return_rate"},
        tests=_array(_ref("AbTest")),
        **{"from": TIME},
    ),
    "RedirectUrl": _obj("url", url=STR),
}


def _items(name: str, **extra: dict[str, Any]) -> dict[str, Any]:
    """The one list envelope: `{"data": [...], "next_cursor": str | null}` (see api/http.py)."""
    item = _ref(name) if name in RESPONSE_SCHEMAS else _obj()
    return _obj("data", "next_cursor", data=_array(item), next_cursor=CURSOR, **extra)


# --- query and header parameters -------------------------------------------------------------------

LINK_FILTERS = (
    Param("tag", {"type": "string", "maxLength": 200}, "only links with this tag name"),
    Param("domain_id", UUID),
    Param("active", BOOL),
    Param("created_from", TIME),
    Param("created_to", TIME),
    Param("search", {"type": "string", "maxLength": 200}, "substring of URL, title or short code"),
    Param("q", {"type": "string", "maxLength": 200}, "full-text query"),
    Param("deleted", BOOL, "list soft-deleted links instead"),
)
LINK_PAGING = (
    Param("sort", {"enum": list(SORT_KEYS)}),
    Param("order", {"enum": ["asc", "desc"]}),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": LINKS_MAX_LIMIT, "default": 20}),
    Param("cursor", STR, "the previous page's next_cursor"),
    Param("page", {"type": "integer", "minimum": 1}, "offset paging instead of cursors"),
)
WINDOW = (
    Param("from", TIME, "window start (default: the link's creation, or 30 days ago)"),
    Param("to", TIME, "window end (default: now)"),
    Param("tz", STR, "IANA time zone of the buckets, e.g. Europe/Paris"),
)
REPORT = (
    *WINDOW,
    Param("interval", {"enum": list(INTERVALS)}),
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "rows per breakdown",
    ),
)
FORMAT = Param("format", {"enum": ["json", "csv"]})
AUDIT_QUERY = (
    Param("action", STR),
    Param("resource_type", STR),
    Param("resource_id", UUID),
    Param("user_id", UUID),
    Param("from", TIME),
    Param("to", TIME),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),
    Param("cursor", STR),
)
WORKSPACE_HEADER = Param(
    "X-Workspace-Id", UUID, "with a JWT: the workspace to act in (default: the user's first)", "header"
)

# --- the operations ----------------------------------------------------------------------------------

_V1 = "/api/v1"
_WS = f"{_V1}/workspaces/{{workspace_id}}"
_CSV = "text/csv"
_HTML = "text/html"
_NO_BODY: dict[str, Any] = {}

REDIRECT_RESPONSES: dict[int, dict[str, Any]] = {
    200: {"description": "The password form of a protected link", "content": {_HTML: {"schema": STR}}},
    301: {
        "description": "Permanent redirect (the link's redirect_type)",
        "headers": {"Location": {"schema": STR}},
    },
    302: {"description": "Redirect to the destination", "headers": {"Location": {"schema": STR}}},
    307: {"description": "Temporary redirect keeping the method", "headers": {"Location": {"schema": STR}}},
    308: {"description": "Permanent redirect keeping the method", "headers": {"Location": {"schema": STR}}},
    401: {"description": "Wrong password (the form again)", "content": {_HTML: {"schema": STR}}},
    404: {"description": "No such link", "content": {_HTML: {"schema": STR}}},
    410: {"description": "Expired, exhausted or blocked link", "content": {_HTML: {"schema": STR}}},
    429: {"description": "Too many unknown codes or password attempts", "content": {_HTML: {"schema": STR}}},
    503: {"description": "A link with a click cap while Redis is down", "content": {_HTML: {"schema": STR}}},
}

OPERATIONS: dict[tuple[str, str], Op] = {
    # meta
    ("GET", "/openapi.json"): Op("This OpenAPI document", result={"type": "object"}, auth=Auth.NONE),
    ("GET", "/docs"): Op("Human-readable API reference", result=STR, media=_HTML, auth=Auth.NONE),
    ("GET", "/livez"): Op(
        "Liveness: the process and its event loop answer",
        result=_obj("status", status={"enum": ["ok"]}),
        auth=Auth.NONE,
    ),
    ("GET", "/readyz"): Op(
        "Readiness: PostgreSQL and Redis answer (Kafka is not required: clicks are spooled)",
        result=_obj("status", "checks", status={"enum": ["ok", "unavailable"]}, checks=_obj()),
        auth=Auth.NONE,
        responses={503: {"description": "PostgreSQL or Redis does not answer (same body)"}},
    ),
    ("GET", "/healthz"): Op(
        "Deep health of PostgreSQL, Redis, Kafka and ClickHouse (diagnostics, not readiness)",
        result=_obj("status", "checks", status={"enum": ["ok", "unavailable"]}, checks=_obj()),
        auth=Auth.NONE,
        responses={503: {"description": "A backing service does not answer (same body)"}},
    ),
    ("GET", "/metrics"): Op("Prometheus metrics", result=STR, media="text/plain", auth=Auth.NONE),
    # links
    ("GET", f"{_V1}/links"): Op(
        "List and search links",
        result=_ref("LinkPage"),
        query=(*LINK_FILTERS, *LINK_PAGING),
        headers=(WORKSPACE_HEADER,),
    ),
    ("POST", f"{_V1}/links"): Op(
        "Create a link",
        201,
        _ref("Link"),
        body=links.LinkCreate,
        errors=(402, 409),
        headers=(WORKSPACE_HEADER,),
    ),
    ("POST", f"{_V1}/links/bulk"): Op(
        f"Create up to {MAX_BULK} links; each item succeeds or fails on its own",
        result=_ref("BulkResult"),
        body=links.BulkCreate,
        errors=(402,),
    ),
    ("GET", f"{_V1}/links/export.csv"): Op("Export links as CSV", result=STR, media=_CSV, query=LINK_FILTERS),
    ("POST", f"{_V1}/links/import"): Op(
        "Import links from a CSV file: a LinkRift export or url,short_code,title,tags columns, or a "
        "Bitly, Shlink, Kutt or YOURLS export",
        result=_ref("ImportReport"),
        body_media={
            "multipart/form-data": _obj(
                "file",
                file={"type": "string", "contentMediaType": "text/csv"},
                format={"enum": list(FORMATS)},
            ),
            _CSV: STR,
        },
        query=(Param("format", {"enum": list(FORMATS)}, "default: detected from the header row"),),
        errors=(402, 413),
    ),
    ("GET", f"{_V1}/links/{{link_id}}"): Op("Read a link", result=_ref("Link")),
    ("PATCH", f"{_V1}/links/{{link_id}}"): Op(
        "Change a link (only the fields sent; null clears)",
        result=_ref("Link"),
        body=links.LinkPatch,
        errors=(409,),
    ),
    ("DELETE", f"{_V1}/links/{{link_id}}"): Op("Soft-delete a link", 204),
    ("POST", f"{_V1}/links/{{link_id}}/restore"): Op(
        "Restore a deleted link", result=_ref("Link"), errors=(402, 409)
    ),
    # tags
    ("GET", f"{_V1}/tags"): Op("List tags", result=_items("Tag")),
    ("POST", f"{_V1}/tags"): Op("Create a tag", 201, _ref("Tag"), body=tags.TagCreate, errors=(409,)),
    ("PATCH", f"{_V1}/tags/{{tag_id}}"): Op(
        "Rename or recolour a tag", result=_ref("Tag"), body=tags.TagPatch, errors=(409,)
    ),
    ("DELETE", f"{_V1}/tags/{{tag_id}}"): Op("Delete a tag", 204),
    ("PUT", f"{_V1}/links/{{link_id}}/tags/{{tag_id}}"): Op("Attach a tag to a link", 204),
    ("DELETE", f"{_V1}/links/{{link_id}}/tags/{{tag_id}}"): Op("Detach a tag from a link", 204),
    # rules
    ("GET", f"{_V1}/links/{{link_id}}/rules"): Op("List a link's redirect rules", result=_items("Rule")),
    ("POST", f"{_V1}/links/{{link_id}}/rules"): Op(
        "Add a redirect rule", 201, _ref("Rule"), body=rules.RuleCreate, errors=(402,)
    ),
    ("GET", f"{_V1}/links/{{link_id}}/rules/{{rule_id}}"): Op("Read a rule", result=_ref("Rule")),
    ("PATCH", f"{_V1}/links/{{link_id}}/rules/{{rule_id}}"): Op(
        "Change a rule", result=_ref("Rule"), body=rules.RulePatch
    ),
    ("DELETE", f"{_V1}/links/{{link_id}}/rules/{{rule_id}}"): Op("Delete a rule", 204),
    # analytics
    ("GET", f"{_V1}/links/{{link_id}}/analytics"): Op(
        "A link's click report (JSON, or CSV with format=csv)",
        result=_ref("LinkAnalytics"),
        query=(*REPORT, FORMAT),
        responses={
            200: {
                "description": "The report",
                "content": {"application/json": {"schema": _ref("LinkAnalytics")}, _CSV: {"schema": STR}},
            }
        },
        errors=(503,),
    ),
    ("GET", f"{_V1}/links/{{link_id}}/analytics/ab"): Op(
        "A/B results per variant: clicks, unique visitors, share, the leader and its confidence",
        result=_ref("AbReport"),
        query=WINDOW,
        errors=(503,),
        description="Human clicks only. The success measure is the return rate (visitors who "
        "clicked again in the window); `probability_best` is the Bayesian probability that a variant "
        "has the highest return rate (docs/analytics.md).",
    ),
    ("GET", f"{_V1}/links/{{link_id}}/analytics.csv"): Op(
        "A link's click report as CSV", result=STR, media=_CSV, query=REPORT, errors=(503,)
    ),
    ("GET", f"{_V1}/links/{{link_id}}/clicks.csv"): Op(
        "Raw clicks of a link as CSV (no IPs, user agents or visitor ids)",
        result=STR,
        media=_CSV,
        errors=(503,),
        query=(
            *WINDOW,
            Param(
                "max_rows",
                {"type": "integer", "minimum": 1, "maximum": MAX_EXPORT_ROWS, "default": DEFAULT_EXPORT_ROWS},
            ),
        ),
    ),
    ("GET", f"{_V1}/analytics"): Op(
        "The workspace's click report, optionally for one link",
        query=(*REPORT, FORMAT, Param("link_id", UUID)),
        errors=(404, 503),
        responses={
            200: {
                "description": "The report",
                "content": {"application/json": {"schema": _ref("Analytics")}, _CSV: {"schema": STR}},
            }
        },
    ),
    ("GET", f"{_V1}/stream/clicks"): Op(
        "Live clicks as Server-Sent Events (event `click`, id = the click's event_id)",
        result=STR,
        media="text/event-stream",
        errors=(404,),
        query=(
            Param("link_id", UUID),
            Param("last_event_id", {"type": "string", "maxLength": 64}, "resume after this click"),
        ),
        headers=(
            Param("Last-Event-ID", {"type": "string", "maxLength": 64}, "resume after this click", "header"),
        ),
    ),
    ("GET", f"{_V1}/audit-logs"): Op(
        "Audit log, newest first (admins)",
        result=_items("AuditEntry"),
        query=AUDIT_QUERY,
    ),
    # accounts
    ("POST", f"{_V1}/auth/signup"): Op(
        "Sign up; answers tokens, the user and their first workspace",
        201,
        _ref("Tokens"),
        body=accounts.SignUp,
        auth=Auth.NONE,
        errors=(409,),
    ),
    ("POST", f"{_V1}/auth/login"): Op(
        "Sign in (with a TOTP or recovery code when 2FA is on)",
        result=_ref("Tokens"),
        body=accounts.Login,
        auth=Auth.NONE,
        errors=(401,),
    ),
    ("POST", f"{_V1}/auth/refresh"): Op(
        "Rotate a refresh token (body or the lr_refresh cookie)",
        result=_ref("Tokens"),
        body=accounts.RefreshBody,
        body_required=False,
        auth=Auth.NONE,
        errors=(401,),
    ),
    ("POST", f"{_V1}/auth/logout"): Op("End this session", 204, auth=Auth.SESSION),
    ("POST", f"{_V1}/auth/verify-email"): Op(
        "Confirm an email address with its token",
        204,
        body=accounts.TokenBody,
        auth=Auth.NONE,
        errors=(400, 404, 410),
    ),
    ("POST", f"{_V1}/auth/verify-email/resend"): Op(
        "Send the verification email again", 202, auth=Auth.SESSION
    ),
    ("POST", f"{_V1}/auth/password/forgot"): Op(
        "Email a password-reset token (always 202)", 202, body=accounts.ForgotPassword, auth=Auth.NONE
    ),
    ("POST", f"{_V1}/auth/password/reset"): Op(
        "Set a new password with a reset token",
        204,
        body=accounts.ResetPassword,
        auth=Auth.NONE,
        errors=(400, 404, 410),
    ),
    ("GET", f"{_V1}/users/me"): Op("The signed-in user", result=_ref("User"), auth=Auth.SESSION),
    ("PATCH", f"{_V1}/users/me"): Op(
        "Change the profile", result=_ref("User"), body=accounts.ProfileUpdate, auth=Auth.SESSION
    ),
    ("DELETE", f"{_V1}/users/me"): Op(
        "Delete the account (password confirms)",
        204,
        body=accounts.PasswordConfirm,
        auth=Auth.SESSION,
        errors=(409,),
    ),
    ("POST", f"{_V1}/users/me/password"): Op(
        "Change the password; other sessions end", 204, body=accounts.PasswordChange, auth=Auth.SESSION
    ),
    ("GET", f"{_V1}/sessions"): Op("Active sessions", result=_items("Session"), auth=Auth.SESSION),
    ("DELETE", f"{_V1}/sessions"): Op(
        "End every other session", result=_obj("revoked", revoked=INT), auth=Auth.SESSION
    ),
    ("DELETE", f"{_V1}/sessions/{{session_id}}"): Op("End one session", 204, auth=Auth.SESSION),
    ("POST", f"{_V1}/users/me/2fa/setup"): Op(
        "Start TOTP enrolment",
        result=_obj("secret", "otpauth_uri", secret=STR, otpauth_uri=STR, qr_svg=STR),
        auth=Auth.SESSION,
        errors=(409,),
    ),
    ("POST", f"{_V1}/users/me/2fa/enable"): Op(
        "Turn 2FA on with a first code; answers the recovery codes once",
        result=_obj("recovery_codes", recovery_codes=_array(STR)),
        body=accounts.TotpCode,
        auth=Auth.SESSION,
        errors=(409,),
    ),
    ("POST", f"{_V1}/users/me/2fa/disable"): Op(
        "Turn 2FA off (password confirms)", 204, body=accounts.PasswordConfirm, auth=Auth.SESSION
    ),
    # workspaces
    ("GET", f"{_V1}/workspaces"): Op("The user's workspaces", result=_items("Workspace"), auth=Auth.SESSION),
    ("POST", f"{_V1}/workspaces"): Op(
        "Create a workspace",
        201,
        _ref("Workspace"),
        body=workspaces.WorkspaceCreate,
        auth=Auth.SESSION,
        errors=(409,),
    ),
    ("GET", _WS): Op("Read a workspace", result=_ref("Workspace")),
    ("PATCH", _WS): Op(
        "Change a workspace", result=_ref("Workspace"), body=workspaces.WorkspaceUpdate, errors=(409,)
    ),
    ("DELETE", _WS): Op("Delete a workspace (owner)", 204, errors=(409,), auth=Auth.SESSION),
    ("POST", f"{_WS}/transfer"): Op(
        "Transfer ownership to a member", 204, body=workspaces.Transfer, errors=(409,), auth=Auth.SESSION
    ),
    ("GET", f"{_WS}/members"): Op("Members and their roles", result=_items("Member")),
    ("PATCH", f"{_WS}/members/{{user_id}}"): Op(
        "Change a member's role", 204, body=workspaces.RoleChange, errors=(409,)
    ),
    ("DELETE", f"{_WS}/members/{{user_id}}"): Op(
        "Remove a member, or leave (your own id)", 204, errors=(409,)
    ),
    ("GET", f"{_WS}/invitations"): Op("Pending invitations", result=_items("Invitation")),
    ("POST", f"{_WS}/invitations"): Op(
        "Invite by email", 201, _obj("id", id=UUID), body=workspaces.InvitationCreate, errors=(402, 409)
    ),
    ("DELETE", f"{_WS}/invitations/{{invitation_id}}"): Op("Revoke an invitation", 204),
    ("POST", f"{_V1}/invitations/accept"): Op(
        "Accept an invitation with its token",
        result=_obj("workspace_id", workspace_id=UUID),
        body=workspaces.InvitationAccept,
        auth=Auth.SESSION,
        errors=(404, 409, 410),
    ),
    ("GET", f"{_WS}/api-keys"): Op(
        "API keys (your own, or all for admins)", result=_items("ApiKey"), auth=Auth.SESSION
    ),
    ("POST", f"{_WS}/api-keys"): Op(
        "Create an API key; the plaintext `key` is in this answer only",
        201,
        {"allOf": [_ref("ApiKey"), _obj("key", key=STR)]},
        body=workspaces.ApiKeyCreate,
        auth=Auth.SESSION,
    ),
    ("GET", f"{_WS}/api-keys/{{key_id}}"): Op("Read an API key", result=_ref("ApiKey"), auth=Auth.SESSION),
    ("PATCH", f"{_WS}/api-keys/{{key_id}}"): Op(
        "Change an API key", result=_ref("ApiKey"), body=workspaces.ApiKeyUpdate, auth=Auth.SESSION
    ),
    ("DELETE", f"{_WS}/api-keys/{{key_id}}"): Op("Revoke an API key", 204, auth=Auth.SESSION),
    # domains
    ("GET", f"{_V1}/domains"): Op("Custom domains", result=_items("Domain")),
    ("POST", f"{_V1}/domains"): Op(
        "Add a custom domain", 201, _ref("Domain"), body=domains.DomainCreate, errors=(402, 409)
    ),
    ("GET", f"{_V1}/domains/{{domain_id}}"): Op("Read a domain", result=_ref("Domain")),
    ("PATCH", f"{_V1}/domains/{{domain_id}}"): Op(
        "Change a domain", result=_ref("Domain"), body=domains.DomainUpdate
    ),
    ("DELETE", f"{_V1}/domains/{{domain_id}}"): Op("Remove a domain", 204),
    ("POST", f"{_V1}/domains/{{domain_id}}/verify"): Op(
        "Check the domain's DNS TXT record now", result=_ref("Domain")
    ),
    # QR codes
    ("GET", f"{_V1}/links/{{link_id}}/qr-codes"): Op("A link's QR codes", result=_items("QrCode")),
    ("POST", f"{_V1}/links/{{link_id}}/qr-codes"): Op(
        "Create a QR code", 201, _ref("QrCode"), body=qr.QrFields, errors=(402,)
    ),
    ("GET", f"{_V1}/links/{{link_id}}/qr-codes/{{qr_id}}"): Op("Read a QR code", result=_ref("QrCode")),
    ("PATCH", f"{_V1}/links/{{link_id}}/qr-codes/{{qr_id}}"): Op(
        "Change a QR code", result=_ref("QrCode"), body=qr.QrFields
    ),
    ("DELETE", f"{_V1}/links/{{link_id}}/qr-codes/{{qr_id}}"): Op("Delete a QR code", 204),
    ("GET", f"{_V1}/qr/{{qr_id}}.{{fmt}}"): Op(
        "A QR code's image (PNG or SVG)",
        result={"type": "string", "contentMediaType": "image/png"},
        media="image/png",
        responses={
            200: {
                "description": "The image",
                "content": {"image/png": {"schema": STR}, "image/svg+xml": {"schema": STR}},
            },
            304: {"description": "Not modified (If-None-Match)"},
        },
    ),
    # bio pages
    ("GET", f"{_V1}/bio-pages"): Op("Bio pages", result=_items("BioPage")),
    ("POST", f"{_V1}/bio-pages"): Op(
        "Create a bio page", 201, _ref("BioPage"), body=bio.PageCreate, errors=(402, 409)
    ),
    ("GET", f"{_V1}/bio-pages/{{page_id}}"): Op("Read a bio page", result=_ref("BioPage")),
    ("PATCH", f"{_V1}/bio-pages/{{page_id}}"): Op(
        "Change a bio page", result=_ref("BioPage"), body=bio.PageUpdate, errors=(409,)
    ),
    ("DELETE", f"{_V1}/bio-pages/{{page_id}}"): Op("Delete a bio page", 204),
    ("GET", f"{_V1}/bio-pages/{{page_id}}/links"): Op("A page's buttons", result=_items("BioLink")),
    ("POST", f"{_V1}/bio-pages/{{page_id}}/links"): Op(
        "Add a button", 201, _ref("BioLink"), body=bio.LinkCreate, errors=(402,)
    ),
    ("POST", f"{_V1}/bio-pages/{{page_id}}/links/reorder"): Op(
        "Reorder the buttons (every button id, in the new order)",
        result=_items("BioLink"),
        body=bio.Reorder,
    ),
    ("PATCH", f"{_V1}/bio-pages/{{page_id}}/links/{{link_id}}"): Op(
        "Change a button", result=_ref("BioLink"), body=bio.LinkUpdate
    ),
    ("DELETE", f"{_V1}/bio-pages/{{page_id}}/links/{{link_id}}"): Op("Delete a button", 204),
    ("GET", f"{_V1}/bio-themes"): Op("Bio page themes", result=_items("BioTheme")),
    ("POST", f"{_V1}/bio-themes"): Op(
        "Create a theme", 201, _ref("BioTheme"), body=bio.ThemeCreate, errors=(409,)
    ),
    ("GET", f"{_V1}/bio-themes/{{theme_id}}"): Op("Read a theme", result=_ref("BioTheme")),
    ("PATCH", f"{_V1}/bio-themes/{{theme_id}}"): Op(
        "Change a theme", result=_ref("BioTheme"), body=bio.ThemeUpdate, errors=(409,)
    ),
    ("DELETE", f"{_V1}/bio-themes/{{theme_id}}"): Op("Delete a theme", 204, errors=(409,)),
    # webhooks
    ("GET", f"{_V1}/webhooks"): Op("Outgoing webhooks", result=_items("Webhook")),
    ("POST", f"{_V1}/webhooks"): Op(
        "Create a webhook; the signing `secret` is in this answer only",
        201,
        {"allOf": [_ref("Webhook"), _obj("secret", secret=STR)]},
        body=webhooks.WebhookCreate,
        errors=(402,),
    ),
    ("GET", f"{_V1}/webhooks/{{webhook_id}}"): Op("Read a webhook", result=_ref("Webhook")),
    ("PATCH", f"{_V1}/webhooks/{{webhook_id}}"): Op(
        "Change a webhook", result=_ref("Webhook"), body=webhooks.WebhookUpdate
    ),
    ("DELETE", f"{_V1}/webhooks/{{webhook_id}}"): Op("Delete a webhook", 204),
    ("POST", f"{_V1}/webhooks/{{webhook_id}}/rotate-secret"): Op(
        "Rotate the signing secret (the old one stays valid for a grace period)",
        result=_obj("secret", "previous_secret_valid_seconds", secret=STR, previous_secret_valid_seconds=INT),
    ),
    ("POST", f"{_V1}/webhooks/{{webhook_id}}/test"): Op(
        "Send a test event now; answers the delivery", result=_ref("Delivery")
    ),
    ("GET", f"{_V1}/webhooks/{{webhook_id}}/deliveries"): Op(
        "Delivery log, newest first",
        result=_items("Delivery"),
        query=(
            Param("limit", {"type": "integer", "minimum": 1, "maximum": webhooks.MAX_PAGE, "default": 50}),
            Param("cursor", STR),
        ),
    ),
    ("POST", f"{_V1}/webhooks/{{webhook_id}}/deliveries/{{delivery_id}}/redeliver"): Op(
        "Deliver a past event again now; answers the delivery", 202, _ref("Delivery"), errors=(409,)
    ),
    # billing
    ("POST", f"{_V1}/billing/checkout"): Op(
        "A Stripe Checkout URL for a plan",
        result=_ref("RedirectUrl"),
        body=billing.CheckoutRequest,
        errors=(409, 503),
    ),
    ("POST", f"{_V1}/billing/portal"): Op(
        "A Stripe customer-portal URL", result=_ref("RedirectUrl"), errors=(409, 503)
    ),
    ("POST", "/webhooks/stripe"): Op(
        "Stripe event receiver (verified by the Stripe-Signature header)",
        result=_obj("received", received=BOOL),
        body_media={"application/json": {"type": "object"}},
        headers=(Param("Stripe-Signature", STR, "Stripe's HMAC signature", "header", required=True),),
        auth=Auth.NONE,
        errors=(400, 422, 503),
    ),
    # public pages
    ("GET", "/qr/{qr_id}.{fmt}"): Op(
        "A QR code's image; the random id is the capability",
        auth=Auth.NONE,
        errors=(404,),
        responses={
            200: {
                "description": "The image",
                "content": {"image/png": {"schema": STR}, "image/svg+xml": {"schema": STR}},
            },
            304: {"description": "Not modified (If-None-Match)"},
        },
    ),
    ("GET", "/"): Op(
        "The landing page (or the custom domain's default redirect)",
        result=STR,
        media=_HTML,
        auth=Auth.NONE,
        responses={
            302: {"description": "The domain's default redirect", "headers": {"Location": {"schema": STR}}}
        },
    ),
    ("GET", "/@{slug}"): Op(
        "A published bio page",
        result=STR,
        media=_HTML,
        auth=Auth.NONE,
        responses={404: {"description": "No such published page", "content": {_HTML: {"schema": STR}}}},
    ),
    ("GET", "/@{slug}/l/{link_id}"): Op(
        "Follow a bio page button (counted as a click)",
        302,
        auth=Auth.NONE,
        responses={
            302: {"description": "Redirect to the button's URL", "headers": {"Location": {"schema": STR}}},
            404: {"description": "No such visible button", "content": {_HTML: {"schema": STR}}},
        },
    ),
    ("GET", "/{code}"): Op(
        "Follow a short link",
        302,
        auth=Auth.NONE,
        responses=REDIRECT_RESPONSES,
    ),
    ("POST", "/{code}"): Op(
        "Unlock a password-protected link (the form posts here)",
        auth=Auth.NONE,
        body_media={
            "application/x-www-form-urlencoded": _obj(
                "password", password={"type": "string", "maxLength": 1024}
            )
        },
        responses={
            **REDIRECT_RESPONSES,
            303: {"description": "Unlocked: go to the destination", "headers": {"Location": {"schema": STR}}},
        },
    ),
}

# Path parameters that are not ids (every other `{…_id}` is a UUID).
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "fmt": {"enum": ["png", "svg"]},
    "slug": {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9_-]{0,98}[a-z0-9])?$"},
    "code": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$"},
}


# --- building the document ---------------------------------------------------------------------------


def route_keys(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every API and public route; HEAD is implied by GET. The web
    app's HTML pages (web/, under /app, and its email-link aliases) and static files (the /docs
    assets) are not part of the API."""
    keys: list[tuple[str, str]] = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None or _is_web_page(route):
            continue
        if isinstance(route.resource, web.StaticResource):
            continue
        key = (route.method, route.resource.canonical)
        if key not in keys:
            keys.append(key)
    return keys


def _is_web_page(route: web.AbstractRoute) -> bool:
    path = route.resource.canonical if route.resource is not None else ""
    module = getattr(route.handler, "__module__", "") or ""
    return path == "/app" or path.startswith("/app/") or module.split(".")[0] == "web"


def missing_operations(app: web.Application) -> list[tuple[str, str]]:
    return [key for key in route_keys(app) if key not in OPERATIONS]


def _tag(path: str) -> str:
    if path.startswith(_V1 + "/"):
        head = path.removeprefix(_V1 + "/").split("/")[0]
        return {
            "auth": "accounts",
            "users": "accounts",
            "sessions": "accounts",
            "invitations": "workspaces",
            "qr": "qr-codes",
            "stream": "analytics",
            "audit-logs": "audit",
        }.get(head, head)
    return "public"


def _path_params(path: str) -> list[dict[str, Any]]:
    out = []
    for segment in path.split("{")[1:]:
        name = segment.split("}")[0]
        schema = PATH_PARAMS.get(name, UUID)
        out.append({"name": name, "in": "path", "required": True, "schema": schema})
    return out


def _model_schemas(models: dict[str, type[BaseModel]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        schema = model.model_json_schema(ref_template=_REF)
        out.update(schema.pop("$defs", {}))
        schema["title"] = name
        out[name] = schema
    return out


def _component_name(model: type[BaseModel]) -> str:
    """Bio page models share names with the links api's (LinkCreate, ...), so theirs carry `Bio`."""
    name = model.__name__
    return f"Bio{name}" if model.__module__ == bio.__name__ and not name.startswith("Bio") else name


def _responses(op: Op, path: str, has_params: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    success: dict[str, Any] = {"description": "No content" if op.status == 204 else op.summary}
    if op.result is not None:
        success["content"] = {op.media: {"schema": op.result}}
    out[str(op.status)] = success
    errors: set[int] = set(op.errors)
    if op.auth is not Auth.NONE:
        errors |= {401, 403}
    if path.startswith("/api/"):
        errors.add(429)  # the per-IP limit applies to every api route
    if op.body is not None or op.body_media or op.query or has_params:
        errors.add(422)
    if op.body is not None:
        errors.add(413)
    if "{" in path and path.startswith("/api/"):
        errors.add(404)
    for status in sorted(errors):
        if status >= 500:
            out[str(status)] = {
                "description": "A backing service (ClickHouse, Stripe) is not configured or does not answer",
                "content": {"application/json": {"schema": ERROR_REF}},
            }
        else:
            out[str(status)] = {
                "description": _ERROR_TEXT[status],
                "content": {"application/json": {"schema": ERROR_REF}},
            }
    for status, response in op.responses.items():
        out[str(status)] = response
    return dict(sorted(out.items()))


def _operation(method: str, path: str, op: Op, body_name: str | None) -> dict[str, Any]:
    params = _path_params(path) + [p.to_openapi() for p in (*op.query, *op.headers)]
    out: dict[str, Any] = {
        "operationId": method.lower()
        + "_"
        + re.sub(r"[^A-Za-z0-9]+", "_", path.replace("@", "at_")).strip("_"),
        "summary": op.summary,
        "tags": [_tag(path)],
    }
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = params
    content: dict[str, Any] = {}
    if body_name is not None:
        content["application/json"] = {"schema": _ref(body_name)}
    for media, schema in (op.body_media or {}).items():
        content[media] = {"schema": schema}
    if content:
        out["requestBody"] = {"required": op.body_required, "content": content}
    out["security"] = {Auth.KEY: [{"bearer": []}], Auth.SESSION: [{"session": []}], Auth.NONE: []}[op.auth]
    out["responses"] = _responses(op, path, bool(params))
    return out


def build_spec(app: web.Application, base_url: str) -> dict[str, Any]:
    models: dict[str, type[BaseModel]] = {}
    body_names: dict[type[BaseModel], str] = {}
    for op in OPERATIONS.values():
        if op.body is not None and op.body not in body_names:
            name = _component_name(op.body)
            if name in models:
                raise ValueError(f"two request models are both named {name}")
            models[name] = op.body
            body_names[op.body] = name
    paths: dict[str, dict[str, Any]] = {}
    for method, path in route_keys(app):
        op = OPERATIONS.get((method, path)) or Op(
            "Undocumented route", responses={200: {"description": "Not described yet"}}
        )
        body_name = body_names.get(op.body) if op.body is not None else None
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, body_name)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LinkRift API",
            "version": "1",
            "description": (
                "Link management, analytics and public redirects. Authenticate with "
                "`Authorization: Bearer <token>`: an API key (`lr_…`, acts in its workspace with its "
                "scopes) or a JWT access token from /api/v1/auth/login (acts as the user). Errors are "
                '`{"error": {"code", "message", "field"}}`.'
            ),
        },
        "servers": [{"url": base_url.rstrip("/")}],
        "tags": [{"name": tag} for tag in sorted({_tag(p) for p in paths})],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`lr_…`) or a JWT access token",
                },
                "session": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT access token of a signed-in user; API keys are refused with 403",
                },
            },
            "schemas": dict(sorted({**RESPONSE_SCHEMAS, **_model_schemas(models)}.items())),
        },
    }


def _spec(request: web.Request) -> dict[str, Any]:
    cache = request.app[SPEC]
    if not cache:
        cache.update(build_spec(request.app, request.app[SETTINGS].public_base_url))
    return cache


# --- the docs page -----------------------------------------------------------------------------------

STATIC_DIR = Path(__file__).resolve().parent / "static"
DOCS_ASSETS = "/docs/assets"
# The vendored Swagger UI (api/static/swagger-ui/VENDORED.md); in its asset URLs to bust caches.
SWAGGER_UI_VERSION = "5.35.0"


def docs_csp(public_base_url: str) -> str:
    """Scripts and styles from this origin only (no inline script); "Try it out" may call the
    documented server, which is this origin unless a public base URL says otherwise."""
    server = urlsplit(public_base_url)
    origin = f" {server.scheme}://{server.netloc}" if server.scheme and server.netloc else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"font-src 'self'; connect-src 'self'{origin}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def render_docs(spec: dict[str, Any]) -> str:
    """The /docs page: a shell that loads the vendored Swagger UI, which renders /openapi.json."""
    esc = html.escape
    assets = f"{DOCS_ASSETS}/swagger-ui"
    version = f"?v={SWAGGER_UI_VERSION}"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(spec['info']['title'])} reference</title>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        # An empty icon: the browser would otherwise ask for /favicon.ico, a 404 in its console.
        "<link rel=icon href='data:,'>"
        f"<link rel=stylesheet href='{assets}/swagger-ui.css{version}'></head>"
        "<body><noscript>The API reference needs JavaScript; the raw document is "
        "<a href='/openapi.json'>/openapi.json</a>.</noscript>"
        "<div id=swagger-ui data-spec='/openapi.json'></div>"
        f"<script src='{assets}/swagger-ui-bundle.js{version}'></script>"
        f"<script src='{DOCS_ASSETS}/docs.js{version}'></script></body></html>"
    )


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(_spec(request), headers={"Cache-Control": "public, max-age=300"})


@routes.get("/docs")
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(
        text=render_docs(_spec(request)),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": docs_csp(request.app[SETTINGS].public_base_url),
            "Cache-Control": "public, max-age=300",
        },
    )


def setup(app: web.Application) -> None:
    app[SPEC] = {}
    app.add_routes(routes)
    # Only the files /docs needs: the vendored Swagger UI and its initializer.
    app.router.add_static(DOCS_ASSETS, STATIC_DIR, append_version=False)
