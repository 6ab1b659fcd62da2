"""Bio pages editor: pages, buttons (add, remove, reorder), themes, and a live preview rendered by
the same engine function as the public page, from the form's unsaved values."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from api import bio as api_bio
from api.http import parse_model
from api.state import PG, SETTINGS
from engine.auth.permissions import Action
from engine.bio import repository
from engine.bio import service as bio_service
from engine.bio.css import sanitize_css
from engine.bio.render import PageButton, render_bio_page
from engine.errors import LinkRiftError, ValidationFailed
from engine.records import record_to_json
from web.core import PREFIX, Ctx, audit, form_data, page, render, see_other, uuid_param, with_blank_form

routes = web.RouteTableDef()
PAGE_TEXT = ("title", "bio", "avatar_url", "custom_css", "meta_title", "meta_description", "og_image_url")
# The preview is framed by the editor (same origin) and runs nothing.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


def _page_changes(form: dict[str, str], blocked: list[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {k: (form.get(k, "").strip() or None) for k in PAGE_TEXT}
    if changes["title"] is None:
        raise ValidationFailed("the page needs a title", field="title")
    changes["theme_id"] = form.get("theme_id") or None
    changes["is_published"] = form.get("is_published") == "on"
    body = api_bio.PageUpdate.model_validate(changes).model_dump(exclude_unset=True)
    return api_bio._clean(body, blocked)


async def _index(request: web.Request, ctx: Ctx, *, status: int = 200, **extra: Any) -> web.Response:
    """The workspace's bio pages and the new-page form (`extra`: the form as typed and its errors)."""
    async with request.app[PG].acquire() as conn:
        rows = await repository.list_pages(conn, ctx.principal.workspace_id)
    base = request.app[SETTINGS].public_base_url
    pages = [bio_service.page_json(r, base) for r in rows]
    return render(request, "bio/index.html", with_blank_form({"pages": pages}, **extra), status=status)


@routes.get(PREFIX + "/bio")
@page(action=Action.LINK_READ)
async def bio_pages(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _index(request, ctx)


@routes.post(PREFIX + "/bio")
@page(action=Action.BIO_MANAGE)
async def create_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    try:
        fields = api_bio._clean(
            {"slug": form.get("slug", "").strip(), "title": form.get("title", "").strip()[:255] or None},
            request.app[SETTINGS].blocked_hosts,
        )
        async with request.app[PG].acquire() as conn:
            row = await bio_service.create_page(conn, audit(request, ctx), ctx.principal.workspace_id, fields)
    except LinkRiftError as exc:
        return await _index(
            request, ctx, status=exc.status, errors={exc.field or "slug": exc.message}, form=form
        )
    return see_other(request, f"{PREFIX}/bio/{row['id']}")


async def _editor(request: web.Request, ctx: Ctx, page_id: str, **extra: Any) -> dict[str, Any]:
    ws = ctx.principal.workspace_id
    async with request.app[PG].acquire() as conn:
        row = await repository.get_page(conn, ws, page_id)
        buttons = await bio_service.list_links(conn, ws, page_id)
        themes = await repository.list_themes(conn, ws)
    page_json = bio_service.page_json(row, request.app[SETTINGS].public_base_url)
    form = {k: "" if page_json.get(k) is None else str(page_json[k]) for k in (*PAGE_TEXT, "theme_id")}
    if page_json.get("is_published"):
        form["is_published"] = "on"
    button_rows = [record_to_json(b) for b in buttons]
    return {
        "page": page_json,
        "buttons": button_rows,
        "button_forms": {b["id"]: button_form_of(b) for b in button_rows},
        "button_form": {"is_visible": "on"},
        "editing_button": None,
        "edit_errors": {},
        "themes": [record_to_json(t) for t in themes],
        "form": form,
        "errors": {},
        "button_errors": {},
        **extra,
    }


async def _refused(
    request: web.Request,
    ctx: Ctx,
    page_id: str,
    exc: LinkRiftError | ValueError,
    field: str,
    message: str,
    **form: Mapping[str, str],
) -> web.Response:
    """The editor again (422) with the page's or the new button's form as typed (`form=` or
    `button_form=`) and why it was refused; a ValueError (pydantic) gets `field` and `message`."""
    if isinstance(exc, LinkRiftError):
        field, message = exc.field or field, exc.message
    errors_key = "button_errors" if "button_form" in form else "errors"
    context = await _editor(request, ctx, page_id, **form, **{errors_key: {field: message}})
    return render(request, "bio/editor.html", context, status=422)


@routes.get(PREFIX + "/bio/{page_id}")
@page(action=Action.LINK_READ)
async def editor(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    page_id = uuid_param(request, "page_id")
    context = await _editor(request, ctx, page_id, saved=request.query.get("saved") == "1")
    return render(request, "bio/editor.html", context)


@routes.post(PREFIX + "/bio/{page_id}")
@page(action=Action.BIO_MANAGE)
async def save(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    page_id = uuid_param(request, "page_id")
    form = await form_data(request)
    try:
        changes = _page_changes(form, request.app[SETTINGS].blocked_hosts)
        async with request.app[PG].acquire() as conn:
            await bio_service.update_page(
                conn, audit(request, ctx), ctx.principal.workspace_id, page_id, changes
            )
    except (LinkRiftError, ValueError) as exc:
        return await _refused(request, ctx, page_id, exc, "form", "check the highlighted fields", form=form)
    return see_other(request, f"{PREFIX}/bio/{page_id}?saved=1")


@routes.get(PREFIX + "/bio/{page_id}/preview")
@page(action=Action.LINK_READ)
async def preview(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """The page as the public sees it, from the editor's current (unsaved) values."""
    page_id = uuid_param(request, "page_id")
    ws = ctx.principal.workspace_id
    q = request.query
    async with request.app[PG].acquire() as conn:
        row = dict(await repository.get_page(conn, ws, page_id))
        # The buttons the public page shows now: shown, and inside their visibility window.
        buttons = await repository.visible_links(conn, page_id, datetime.now(UTC))
        theme = None
        theme_id = q.get("theme_id", "")
        if theme_id:
            try:
                theme = await repository.get_theme(conn, ws, str(uuid_param_value(theme_id)))
            except LinkRiftError:
                theme = None
    values = {k: (q.get(k, "")[:4000] or None) for k in PAGE_TEXT if k in q}
    row.update(values)
    if not row.get("title"):
        row["title"] = "Untitled"
    try:
        row["custom_css"] = sanitize_css(row["custom_css"]) if row.get("custom_css") else None
    except LinkRiftError:
        row["custom_css"] = None
    for key in ("avatar_url", "og_image_url"):
        value = row.get(key)
        if value and not str(value).startswith(("https://", "http://")):
            row[key] = None
    html = render_bio_page(
        row,
        [PageButton(title=b["title"], href="#", icon=b["icon"]) for b in buttons],
        canonical_url=f"{request.app[SETTINGS].public_base_url}/@{row['slug']}",
        colors=theme["colors"] if theme else None,
        font=theme["font"] if theme else None,
    )
    return web.Response(
        text=html,
        content_type="text/html",
        headers={"Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )


def uuid_param_value(raw: str) -> str:
    try:
        return str(UUID(raw))
    except ValueError:
        raise ValidationFailed("not a valid id", field="theme_id") from None


def button_body(form: dict[str, str], blocked: list[str], *, editing: bool) -> dict[str, Any]:
    """The button form as the API's body, validated by the API's model and checks: blanks are
    "not set" when adding and "clear" when editing; times are UTC (datetime-local, minutes)."""
    raw: dict[str, Any] = {
        "title": form.get("title", "").strip()[:255],
        "url": form.get("url", "").strip(),
        "is_visible": form.get("is_visible") == "on",
    }
    if icon := form.get("icon", "").strip():
        raw["icon"] = icon
    elif editing:
        raw["icon"] = None
    for key in ("visible_from", "visible_until"):
        value = form.get(key, "").strip()
        if value and len(value) == 16:
            value += ":00+00:00"
        if value:
            raw[key] = value
        elif editing:
            raw[key] = None
    model = api_bio.LinkUpdate if editing else api_bio.LinkCreate
    return api_bio._clean(parse_model(model, raw).model_dump(exclude_unset=True), blocked)


def button_form_of(button: dict[str, Any]) -> dict[str, str]:
    """A stored button as its edit form's values (times in UTC, to the minute)."""
    form = {k: str(button.get(k) or "") for k in ("title", "url", "icon")}
    for key in ("visible_from", "visible_until"):
        value = button.get(key)
        form[key] = datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if value else ""
    if button.get("is_visible"):
        form["is_visible"] = "on"
    return form


@routes.post(PREFIX + "/bio/{page_id}/buttons")
@page(action=Action.BIO_MANAGE)
async def add_button(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    page_id = uuid_param(request, "page_id")
    form = await form_data(request)
    try:
        fields = button_body(form, request.app[SETTINGS].blocked_hosts, editing=False)
        async with request.app[PG].acquire() as conn:
            await bio_service.create_link(
                conn, audit(request, ctx), ctx.principal.workspace_id, page_id, fields
            )
    except (LinkRiftError, ValueError) as exc:
        return await _refused(
            request, ctx, page_id, exc, "title", "the button needs a title and a URL", button_form=form
        )
    return see_other(request, f"{PREFIX}/bio/{page_id}#buttons")


@routes.post(PREFIX + "/bio/{page_id}/buttons/{link_id}")
@page(action=Action.BIO_MANAGE)
async def update_button(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """Edit a button (text, link, icon, shown or hidden, visible from/until): the API's PATCH."""
    page_id, link_id = uuid_param(request, "page_id"), uuid_param(request, "link_id")
    form = await form_data(request)
    try:
        changes = button_body(form, request.app[SETTINGS].blocked_hosts, editing=True)
        async with request.app[PG].acquire() as conn:
            await bio_service.update_link(
                conn, audit(request, ctx), ctx.principal.workspace_id, page_id, link_id, changes
            )
    except LinkRiftError as exc:
        context = await _editor(request, ctx, page_id)
        context["button_forms"][link_id] = form
        context.update(editing_button=link_id, edit_errors={exc.field or "title": exc.message})
        return render(request, "bio/editor.html", context, status=exc.status)
    return see_other(request, f"{PREFIX}/bio/{page_id}#button-{link_id}")


@routes.post(PREFIX + "/bio/{page_id}/buttons/{link_id}/delete")
@page(action=Action.BIO_MANAGE)
async def delete_button(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    page_id, link_id = uuid_param(request, "page_id"), uuid_param(request, "link_id")
    async with request.app[PG].acquire() as conn:
        await bio_service.delete_link(conn, audit(request, ctx), ctx.principal.workspace_id, page_id, link_id)
    return see_other(request, f"{PREFIX}/bio/{page_id}#buttons")


@routes.post(PREFIX + "/bio/{page_id}/buttons/{link_id}/move")
@page(action=Action.BIO_MANAGE)
async def move_button(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    page_id, link_id = uuid_param(request, "page_id"), uuid_param(request, "link_id")
    form = await form_data(request)
    ws = ctx.principal.workspace_id
    async with request.app[PG].acquire() as conn:
        ids = [str(b["id"]) for b in await bio_service.list_links(conn, ws, page_id)]
        if link_id in ids:
            i = ids.index(link_id)
            j = i - 1 if form.get("direction") == "up" else i + 1
            if 0 <= j < len(ids):
                ids[i], ids[j] = ids[j], ids[i]
                await bio_service.reorder_links(conn, audit(request, ctx), ws, page_id, ids)
    return see_other(request, f"{PREFIX}/bio/{page_id}#buttons")


@routes.post(PREFIX + "/bio/{page_id}/delete")
@page(action=Action.BIO_MANAGE)
async def delete_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    page_id = uuid_param(request, "page_id")
    async with request.app[PG].acquire() as conn:
        await bio_service.delete_page(conn, audit(request, ctx), ctx.principal.workspace_id, page_id)
    return see_other(request, f"{PREFIX}/bio")
