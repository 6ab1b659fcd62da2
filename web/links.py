"""Links pages: the table (search, filters, sort, keyset pagination, bulk actions)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDict

from api import links as api_links
from api import qr as api_qr
from api import rules as api_rules
from api.http import parse_model
from api.state import PG, SETTINGS
from engine.auth.permissions import Action, authorize
from engine.domains import repository as domains_repo
from engine.errors import LinkNotFound, LinkRiftError, ValidationFailed
from engine.links import repository, service
from engine.links import rule_service as rules_repo
from engine.links.importers import FORMATS
from engine.links.models import StoredLink
from engine.links.search import SORT_KEYS, LinkFilters, list_links
from engine.links.tags import list_tags, tags_for_links
from engine.qr import service as qr_service
from engine.qr.render import render_png, render_svg
from engine.records import parse_uuid, uuid_or_none
from engine.rules.conditions import MAX_VARIANTS
from web.core import CSRF_HEADER, PREFIX, Ctx, audit, form_data, page, render, see_other

routes = web.RouteTableDef()
PAGE_SIZE = 25
STATES = {"active": (True, False), "paused": (False, False), "deleted": (None, True)}


def _uuid_or_none(raw: str | None, field: str) -> str | None:
    return parse_uuid(raw, field) if raw else None


def list_params(query: Any) -> dict[str, str]:
    """The table's query parameters, cleaned: what the filter form and the pager carry along."""
    out = {}
    for name in ("q", "tag", "domain_id", "state", "sort", "order"):
        value = (query.get(name) or "").strip()[:200]
        if value:
            out[name] = value
    return out


def _filters(params: Mapping[str, str]) -> LinkFilters:
    active, deleted = STATES.get(params.get("state", ""), (None, False))
    return LinkFilters(
        tag=params.get("tag") or None,
        domain_id=_uuid_or_none(params.get("domain_id"), "domain_id"),
        active=active,
        deleted=deleted,
        q=params.get("q") or None,
    )


@routes.get(PREFIX + "/links")
@page(action=Action.LINK_READ)
async def links_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    params = list_params(request.query)
    filters = _filters(params)
    sort = params.get("sort", "created_at")
    if sort not in SORT_KEYS:
        sort = "created_at"
    order = params.get("order", "desc") if params.get("order") in ("asc", "desc") else "desc"
    cursor = (request.query.get("cursor") or "")[:500] or None
    ws = ctx.principal.workspace_id
    async with request.app[PG].acquire() as conn:
        result = await list_links(conn, ws, filters, sort=sort, order=order, limit=PAGE_SIZE, cursor=cursor)
        links = await service.links_json(conn, result.rows, request.app[SETTINGS].public_base_url)
        tags = await list_tags(conn, ws)
        domains = await domains_repo.list_domains(conn, ws)
    next_url = (
        f"{PREFIX}/links?{urlencode({**params, 'cursor': result.next_cursor})}"
        if result.next_cursor
        else None
    )
    context = {
        "links": links,
        "params": params,
        "tags": tags,
        "domains": domains,
        "next_url": next_url,
        "first_url": f"{PREFIX}/links?{urlencode(params)}" if cursor else None,
        "filtered": any(k in params for k in ("q", "tag", "domain_id", "state")),
        "welcome": request.query.get("welcome") == "1",
    }
    template = "links/_rows.html" if request.headers.get("HX-Target") == "link-rows" else "links/index.html"
    return render(request, template, context)


@routes.get(PREFIX + "/links/export.csv")
@page(action=Action.LINK_READ)
async def export_csv(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await api_links.stream_export(
        request, ctx.principal.workspace_id, _filters(list_params(request.query))
    )


@routes.get(PREFIX + "/links/import")
@page(action=Action.LINK_CREATE)
async def import_form(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return render(request, "links/import.html", {"formats": FORMATS, "report": None})


@routes.post(PREFIX + "/links/import")
@page(action=Action.LINK_CREATE)
async def import_csv(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """Upload → the API's import; the report lists every failed row with its reason."""
    try:
        if request.headers.get(CSRF_HEADER):  # htmx upload: streamed with the API's 5 MiB limit
            data, fmt = await api_links._import_payload(request)
        else:
            form = await request.post()
            upload = form.get("file")
            if not isinstance(upload, FileField):
                raise ValidationFailed("choose a CSV file to import", field="file")
            data = upload.file.read(api_links.MAX_IMPORT_BYTES + 1)
            fmt = str(form.get("format") or "") or None
        if not data.strip():
            raise ValidationFailed("the file is empty", field="file")
        report = await api_links.run_import(request, ctx.principal, data, fmt or None)
    except ValidationFailed as exc:
        return render(
            request,
            "links/import.html",
            {"formats": FORMATS, "report": None, "error": exc.message},
            status=exc.status,
        )
    return render(request, "links/import.html", {"formats": FORMATS, "report": report.as_dict()})


# --- create and edit --------------------------------------------------------------------------------

_CLEARABLE = ("title", "description", "max_clicks", "expires_at", "domain_id", *service.UTM_FIELDS)
_TEXT_FIELDS = ("url", "short_code", "title", "description", *service.UTM_FIELDS)
REDIRECT_TYPES = (
    (302, "302 Found (temporary)"),
    (301, "301 Moved permanently"),
    (307, "307 Temporary, keeps method"),
    (308, "308 Permanent, keeps method"),
)


def link_body(form: Mapping[str, str], *, editing: bool) -> dict[str, Any]:
    """The form as the API's JSON body: blanks are "not set" on create and "clear" on edit."""
    body: dict[str, Any] = {}
    for name in (*_TEXT_FIELDS, "domain_id", "max_clicks", "expires_at"):
        value = form.get(name, "").strip()
        if value:
            body[name] = value
        elif editing and name in _CLEARABLE:
            body[name] = None
    if body.get("expires_at") and len(body["expires_at"]) == 16:  # datetime-local: minutes, in UTC
        body["expires_at"] += ":00+00:00"
    if body.get("max_clicks"):
        try:
            body["max_clicks"] = int(body["max_clicks"])
        except ValueError:
            raise ValidationFailed("max clicks must be a whole number", field="max_clicks") from None
    try:
        body["redirect_type"] = int(form.get("redirect_type", "302"))
    except ValueError:
        raise ValidationFailed("choose a redirect type", field="redirect_type") from None
    body["forward_query"] = form.get("forward_query") == "on"
    body["is_active"] = form.get("is_active") == "on"
    body["tags"] = [t.strip() for t in form.get("tags", "").split(",") if t.strip()]
    password = form.get("password", "")
    if editing and form.get("remove_password") == "on":
        body["password"] = None
    elif password:
        body["password"] = password
    if editing and not body.get("short_code"):
        body.pop("short_code", None)
    return body


async def _form_context(request: web.Request, ctx: Ctx) -> dict[str, Any]:
    async with request.app[PG].acquire() as conn:
        domains = await domains_repo.list_domains(conn, ctx.principal.workspace_id)
    return {
        "domains": domains,
        "redirect_types": REDIRECT_TYPES,
        "base_url": request.app[SETTINGS].public_base_url,
    }


def _error_map(exc: LinkRiftError) -> dict[str, str]:
    return {(exc.field or "form").split(".")[0].split("[")[0]: exc.message}


@routes.get(PREFIX + "/links/new")
@page(action=Action.LINK_CREATE)
async def new_link_form(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    context = await _form_context(request, ctx)
    return render(
        request,
        "links/form.html",
        {**context, "link": None, "form": {"is_active": "on", "redirect_type": "302"}, "errors": {}},
    )


@routes.post(PREFIX + "/links/new")
@page(action=Action.LINK_CREATE)
async def create_link(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    who = ctx.principal
    try:
        body = link_body(form, editing=False)
        link = api_links._new_link(
            parse_model(api_links.LinkCreate, body), request.app[SETTINGS].blocked_hosts
        )
        async with request.app[PG].acquire() as conn:
            row = await service.create_link(conn, api_links.link_actor(request, who), link)
    except LinkRiftError as exc:
        context = await _form_context(request, ctx)
        return render(
            request,
            "links/form.html",
            {**context, "link": None, "form": form, "errors": _error_map(exc)},
            status=exc.status,
        )
    request.app[api_links.METADATA].schedule(row.id, row.url)
    return see_other(request, f"{PREFIX}/links/{row.id}?created=1")


def link_id_param(request: web.Request) -> str:
    if (link_id := uuid_or_none(request.match_info["link_id"])) is None:
        raise LinkNotFound("link not found", field="link_id")
    return link_id


async def _link(request: web.Request, ctx: Ctx, link_id: str) -> dict[str, Any]:
    async with request.app[PG].acquire() as conn:
        try:
            row = await repository.get_link(conn, ctx.principal.workspace_id, link_id)
        except LinkNotFound:
            row = await repository.get_link(conn, ctx.principal.workspace_id, link_id, deleted=True)
        return (await service.links_json(conn, [row], request.app[SETTINGS].public_base_url))[0]


def _form_of(link: Mapping[str, Any]) -> dict[str, str]:
    form = {
        k: "" if link.get(k) is None else str(link[k])
        for k in (*_TEXT_FIELDS, "domain_id", "max_clicks", "redirect_type")
    }
    form["expires_at"] = (link.get("expires_at") or "")[:16]
    form["tags"] = ", ".join(t["name"] for t in link.get("tags", []))
    if link.get("forward_query"):
        form["forward_query"] = "on"
    if link.get("is_active"):
        form["is_active"] = "on"
    return form


async def _detail(
    request: web.Request,
    ctx: Ctx,
    link_id: str,
    *,
    status: int = 200,
    form: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    rule_form: Any = None,
    rule_errors: Mapping[str, str] | None = None,
    editing_rule: str | None = None,
    **extra: Any,
) -> web.Response:
    """The link page: settings form, rules table and the rule form (adding, or editing one rule)."""
    link = await _link(request, ctx, link_id)
    context = await _form_context(request, ctx)
    async with request.app[PG].acquire() as conn:
        rule_rows = await rules_repo.list_rules(conn, ctx.principal.workspace_id, link_id)
    return render(
        request,
        "links/detail.html",
        {
            **context,
            "link": link,
            "form": _form_of(link) if form is None else form,
            "errors": errors or {},
            "rules": [r.to_json() for r in rule_rows],
            "rule_form": MultiDict({"rule_type": "device", "is_active": "on"})
            if rule_form is None
            else rule_form,
            "rule_errors": rule_errors or {},
            "editing_rule": editing_rule,
            **extra,
        },
        status=status,
    )


@routes.get(PREFIX + "/links/{link_id}")
@page(action=Action.LINK_READ)
async def link_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    link_id = link_id_param(request)
    rule_form = None
    editing = None
    if (raw := request.query.get("edit_rule")) and ctx.can(Action.LINK_UPDATE):
        editing = _uuid_or_none(raw, "edit_rule")
        assert editing is not None
        async with request.app[PG].acquire() as conn:
            rule = await rules_repo.get_rule(conn, ctx.principal.workspace_id, link_id, editing)
        rule_form = rule_form_of(rule.to_json())
    return await _detail(
        request,
        ctx,
        link_id,
        rule_form=rule_form,
        editing_rule=editing,
        created=request.query.get("created") == "1",
        saved=request.query.get("saved") == "1",
    )


@routes.post(PREFIX + "/links/{link_id}")
@page(action=Action.LINK_UPDATE)
async def update_link(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    link_id = link_id_param(request)
    form = await form_data(request)
    who = ctx.principal
    try:
        body = link_body(form, editing=True)
        changes = parse_model(api_links.LinkPatch, body).model_dump(exclude_unset=True)
        if changes.get("domain_id") is not None:
            changes["domain_id"] = str(changes["domain_id"])
        async with request.app[PG].acquire() as conn:
            row = await service.update_link(conn, api_links.link_actor(request, who), link_id, changes)
    except LinkRiftError as exc:
        return await _detail(request, ctx, link_id, status=exc.status, form=form, errors=_error_map(exc))
    if "url" in changes:
        request.app[api_links.METADATA].schedule(row.id, row.url)
    return see_other(request, f"{PREFIX}/links/{link_id}?saved=1")


@routes.post(PREFIX + "/links/{link_id}/delete")
@page(action=Action.LINK_DELETE)
async def delete_link(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    await _trash(request, ctx, service.delete_link)
    return see_other(request, f"{PREFIX}/links")


@routes.post(PREFIX + "/links/{link_id}/restore")
@page(action=Action.LINK_DELETE)
async def restore_link(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    link_id = await _trash(request, ctx, service.restore_link)
    return see_other(request, f"{PREFIX}/links/{link_id}")


async def _trash(
    request: web.Request,
    ctx: Ctx,
    change: Callable[[asyncpg.Connection, service.Actor, str], Awaitable[StoredLink]],
) -> str:
    """Move the path's link to the trash or back (`change`: service.delete_link or restore_link)."""
    link_id = link_id_param(request)
    async with request.app[PG].acquire() as conn:
        await change(conn, api_links.link_actor(request, ctx.principal), link_id)
    return link_id


@routes.post(PREFIX + "/links/bulk")
@page(action=Action.LINK_UPDATE)
async def bulk(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await request.post()
    ids = [_uuid_or_none(str(v), "ids") for v in form.getall("ids", [])][:200]
    action = form.get("action")
    actor = api_links.link_actor(request, ctx.principal)
    if not ids:
        raise ValidationFailed("select at least one link first", field="ids")
    async with request.app[PG].acquire() as conn:
        for link_id in ids:
            assert link_id is not None
            if action == "delete":
                authorize(ctx.principal.role, None, Action.LINK_DELETE)
                await service.delete_link(conn, actor, link_id)
            elif action == "restore":
                await service.restore_link(conn, actor, link_id)
            elif action == "tag":
                tag = str(form.get("tag") or "").strip()
                if not tag:
                    raise ValidationFailed("type the tag to add", field="tag")
                row = await repository.get_link(conn, ctx.principal.workspace_id, link_id)
                current = [t["name"] for t in (await tags_for_links(conn, [link_id])).get(link_id, [])]
                if tag not in current:
                    await service.update_link(conn, actor, row.id, {"tags": [*current, tag]})
            else:
                raise ValidationFailed("choose an action", field="action")
    back = request.headers.get("Referer", "")
    return see_other(
        request,
        back if back.startswith(request.url.origin().human_repr() + PREFIX + "/links") else PREFIX + "/links",
    )


# --- rules -------------------------------------------------------------------------------------------

RULE_LABELS = {
    "device": "Device",
    "geo": "Location",
    "time": "Time",
    "referrer": "Referrer",
    "language": "Language",
    "ab_test": "A/B test",
}
AB_ROWS = 4
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def variant_rows(form: Any) -> int:
    """How many variant rows the A/B form shows: at least AB_ROWS, and one empty row after the
    last filled one (a rule from the API may have up to MAX_VARIANTS; none is dropped on edit)."""
    filled = [
        i for i in range(MAX_VARIANTS) if any(form.get(f"variants[{i}].{k}") for k in ("id", "url", "weight"))
    ]
    return min(MAX_VARIANTS, max(AB_ROWS, filled[-1] + 2 if filled else 0))


def _csv(form: Any, name: str) -> list[str] | None:
    items = [x.strip() for x in str(form.get(name) or "").split(",") if x.strip()]
    return items or None


def rule_body(form: Any) -> dict[str, Any]:
    """The rule form as the API's JSON body (conditions keyed as the API names them)."""
    rule_type = str(form.get("rule_type") or "")
    conditions: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if value not in (None, "", []):
            conditions[key] = value

    if rule_type == "device":
        put("device_types", [str(v) for v in form.getall("device_types", [])])
        put("os", _csv(form, "os"))
        put("browsers", _csv(form, "browsers"))
    elif rule_type == "geo":
        put("countries", [c.upper() for c in _csv(form, "countries") or []])
        put("regions", _csv(form, "regions"))
        put("cities", _csv(form, "cities"))
        if form.get("exclude") == "on":
            conditions["exclude"] = True
    elif rule_type == "time":
        put("weekdays", [int(str(v)) for v in form.getall("weekdays", []) if str(v).isdigit()])
        windows = []
        for part in _csv(form, "hours") or []:
            start, _, end = part.partition("-")
            windows.append({"start": start.strip(), "end": end.strip()} if end else {"start": start.strip()})
        put("hours", windows)
        put("start", str(form.get("start") or "").strip())
        put("end", str(form.get("end") or "").strip())
        if conditions:
            conditions["timezone"] = str(form.get("timezone") or "UTC").strip()
    elif rule_type == "referrer":
        put("hosts", _csv(form, "hosts"))
        put("pattern", str(form.get("pattern") or ""))
        if form.get("direct") == "on":
            conditions["direct"] = True
    elif rule_type == "language":
        put("languages", _csv(form, "languages"))
    elif rule_type == "ab_test":
        variants = []
        for i in range(MAX_VARIANTS):
            vid, url, weight = (
                str(form.get(f"variants[{i}].{k}") or "").strip() for k in ("id", "url", "weight")
            )
            if not (vid or url or weight):
                continue
            try:
                weight_value: Any = int(weight)
            except ValueError:
                weight_value = weight
            variants.append({"id": vid, "url": url, "weight": weight_value})
        put("variants", variants)
    body: dict[str, Any] = {
        "rule_type": rule_type,
        "conditions": conditions,
        "is_active": form.get("is_active") == "on",
    }
    if dest := str(form.get("destination_url") or "").strip():
        body["destination_url"] = dest
    try:
        body["priority"] = int(str(form.get("priority") or "0"))
    except ValueError:
        raise ValidationFailed("priority must be a whole number", field="priority") from None
    return body


def rule_error_field(field: str | None) -> str:
    """An API error path (conditions.countries[2], conditions.variants[1].url) → the form field."""
    if not field:
        return "form"
    name = field.removeprefix("conditions.")
    if name.startswith("variants["):
        return name if "." in name else "variants"
    if name == "conditions":
        return "form"
    return name.split("[")[0].split(".")[0]


def rule_form_of(rule: Mapping[str, Any]) -> MultiDict[str]:
    """A stored rule as the rule form's values (the inverse of `rule_body`), to edit it in place."""
    c = rule["conditions"]
    form: MultiDict[str] = MultiDict(
        {
            "rule_type": rule["rule_type"],
            "destination_url": rule.get("destination_url") or "",
            "priority": str(rule["priority"]),
        }
    )
    if rule["is_active"]:
        form["is_active"] = "on"
    for name in ("os", "browsers", "countries", "regions", "cities", "hosts", "languages"):
        if c.get(name):
            form[name] = ", ".join(c[name])
    for name in ("pattern", "start", "end"):
        if c.get(name):
            form[name] = str(c[name])
    if rule["rule_type"] == "time":
        form["timezone"] = c.get("timezone", "UTC")
    if c.get("hours"):
        form["hours"] = ", ".join(f"{w['start']}-{w['end']}" for w in c["hours"])
    for name in ("exclude", "direct"):
        if c.get(name):
            form[name] = "on"
    for value in c.get("device_types", []):
        form.add("device_types", value)
    for day in c.get("weekdays", []):
        form.add("weekdays", str(day))
    for i, variant in enumerate(c.get("variants", [])):
        for key in ("id", "url", "weight"):
            form[f"variants[{i}].{key}"] = str(variant[key])
    return form


def rule_summary(rule: Mapping[str, Any]) -> str:
    c = rule["conditions"]
    kind = rule["rule_type"]
    if kind == "ab_test":
        total = sum(v["weight"] for v in c.get("variants", [])) or 1
        return ", ".join(
            f"{v['id']} {round(100 * v['weight'] / total)}% → {v['url']}" for v in c.get("variants", [])
        )
    parts = []
    for key, value in c.items():
        if key == "weekdays":
            value = [WEEKDAYS[d][:3] for d in value]
        if key == "hours":
            value = [f"{w['start']}-{w['end']}" for w in value]
        parts.append(
            f"{key.replace('_', ' ')}: {', '.join(map(str, value)) if isinstance(value, list) else value}"
        )
    return "; ".join(parts)


@routes.post(PREFIX + "/links/{link_id}/rules")
@page(action=Action.LINK_UPDATE)
async def add_rule(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    link_id = link_id_param(request)
    form = await request.post()
    who = ctx.principal
    try:
        body = parse_model(api_rules.RuleCreate, rule_body(form))
        async with request.app[PG].acquire() as conn:
            await rules_repo.create_rule(conn, api_links.link_actor(request, who), link_id, body.model_dump())
    except ValidationFailed as exc:
        return await _detail(
            request,
            ctx,
            link_id,
            status=exc.status,
            rule_form=form,
            rule_errors={rule_error_field(exc.field): exc.message},
        )
    return see_other(request, f"{PREFIX}/links/{link_id}#rules")


@routes.post(PREFIX + "/links/{link_id}/rules/{rule_id}")
@page(action=Action.LINK_UPDATE)
async def update_rule(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """Edit a rule in place: the whole form is sent as the API's PATCH (the merged rule is
    validated as a whole, so a bad field is the same 422 the API answers, shown beside it)."""
    link_id = link_id_param(request)
    rule_id = _uuid_or_none(request.match_info["rule_id"], "rule_id")
    assert rule_id is not None
    form = await request.post()
    try:
        body = rule_body(form)
        body.setdefault("destination_url", None)  # emptied: an A/B rule sends to its variants
        changes = parse_model(api_rules.RulePatch, body).model_dump(exclude_unset=True)
        async with request.app[PG].acquire() as conn:
            await rules_repo.update_rule(
                conn, api_links.link_actor(request, ctx.principal), link_id, rule_id, changes
            )
    except ValidationFailed as exc:
        return await _detail(
            request,
            ctx,
            link_id,
            status=exc.status,
            rule_form=form,
            rule_errors={rule_error_field(exc.field): exc.message},
            editing_rule=rule_id,
        )
    return see_other(request, f"{PREFIX}/links/{link_id}#rules")


@routes.post(PREFIX + "/links/{link_id}/rules/{rule_id}/delete")
@page(action=Action.LINK_UPDATE)
async def delete_rule(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    link_id = link_id_param(request)
    rule_id = _uuid_or_none(request.match_info["rule_id"], "rule_id")
    assert rule_id is not None
    async with request.app[PG].acquire() as conn:
        await rules_repo.delete_rule(conn, api_links.link_actor(request, ctx.principal), link_id, rule_id)
    return see_other(request, f"{PREFIX}/links/{link_id}#rules")


# --- QR designer -------------------------------------------------------------------------------------


def qr_fields(query: Any) -> dict[str, Any]:
    """Designer inputs → validated qr_codes columns (the API's QrFields and checks)."""
    raw: dict[str, Any] = {
        "qr_type": str(query.get("qr_type") or "dynamic"),
        "error_correction": str(query.get("error_correction") or "M"),
        "foreground_color": str(query.get("foreground_color") or "#000000"),
        "background_color": str(query.get("background_color") or "#FFFFFF"),
    }
    for name, default in (("scale", 10), ("border", 4)):
        try:
            raw[name] = int(str(query.get(name) or default))
        except ValueError:
            raise ValidationFailed(f"{name} must be a whole number", field=name) from None
    fields = parse_model(api_qr.QrFields, raw).model_dump()
    fields.pop("logo", None)
    return qr_service.columns(fields)


@routes.get(PREFIX + "/links/{link_id}/qr")
@page(action=Action.LINK_READ)
async def qr_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    link_id = link_id_param(request)
    link = await _link(request, ctx, link_id)
    async with request.app[PG].acquire() as conn:
        saved = await qr_service.list_qr(conn, ctx.principal.workspace_id, link_id)
    current = dict(saved[0]) if saved else {}
    form = {
        k: current.get(k, d)
        for k, d in (
            ("qr_type", "dynamic"),
            ("error_correction", "M"),
            ("foreground_color", "#000000"),
            ("background_color", "#FFFFFF"),
            ("scale", 10),
            ("border", 4),
        )
    }
    return render(request, "links/qr.html", {"link": link, "form": form, "saved": saved})


@routes.get(PREFIX + "/links/{link_id}/qr/preview.svg")
@page(action=Action.LINK_READ)
async def qr_preview(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """The design as an SVG, not saved: the designer's live preview."""
    link_id = link_id_param(request)
    link = await _link(request, ctx, link_id)
    fields = qr_fields(request.query)
    content = link["url"] if fields["qr_type"] == "static" else link["short_url"]
    style = qr_service.style_of({**fields, "logo_png": None})
    body = await asyncio.get_running_loop().run_in_executor(None, render_svg, content, style)
    return web.Response(body=body, content_type="image/svg+xml")


@routes.post(PREFIX + "/links/{link_id}/qr")
@page(action=Action.QR_MANAGE)
async def qr_download(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """Save the design (the link's QR code, so scans count) and answer it as a PNG or SVG file."""
    link_id = link_id_param(request)
    form = await request.post()
    fmt = "svg" if form.get("format") == "svg" else "png"
    fields = qr_fields(form)
    base = request.app[SETTINGS].public_base_url
    ws = ctx.principal.workspace_id
    async with request.app[PG].acquire() as conn:
        saved = await qr_service.list_qr(conn, ws, link_id)
        if saved:
            row = await qr_service.update_qr(
                conn,
                audit(request, ctx),
                workspace_id=ws,
                link_id=link_id,
                qr_id=str(saved[0]["id"]),
                values=fields,
            )
        else:
            row = await qr_service.create_qr(
                conn, audit(request, ctx), workspace_id=ws, link_id=link_id, base_url=base, values=fields
            )
    render_fn = render_png if fmt == "png" else render_svg
    content = qr_service.qr_content(row, base)
    body = await asyncio.get_running_loop().run_in_executor(
        None, render_fn, content, qr_service.style_of(row)
    )
    return web.Response(
        body=body,
        content_type=api_qr.CONTENT_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="qr-{row["short_code"]}.{fmt}"'},
    )
