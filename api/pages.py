"""The small branded HTML pages of the redirect front end (landing, errors and the link password form)."""

from __future__ import annotations

from html import escape

from aiohttp import web

NO_STORE = "private, no-store"
BRAND = "LinkRift"

_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;margin:15vh auto;max-width:32em;padding:0 1em;color:#222}"
    "h1{font-size:1.5em}small{color:#888}input{font:inherit;padding:.4em;margin:.3em 0}"
    ".error{color:#b00020}"
)


def _html(status: int, title: str, body: str, headers: dict[str, str] | None = None) -> web.Response:
    # The brand ends every title once: "Link not found · LinkRift", and the landing page's own
    # title "LinkRift" stays as it is.
    full_title = title if title == BRAND else f"{title} · {BRAND}"
    text = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<meta name=robots content=noindex>"
        f"<title>{escape(full_title)}</title><style>{_STYLE}</style>"
        f"<body><h1>{escape(title)}</h1>{body}<p><small>LinkRift</small></p></body></html>"
    )
    return web.Response(
        status=status,
        text=text,
        content_type="text/html",
        headers={"Cache-Control": NO_STORE, **(headers or {})},
    )


def message_page(
    status: int, title: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return _html(status, title, f"<p>{escape(message)}</p>", headers)


def landing() -> web.Response:
    """`/` of the short-link host (a custom domain without a default_redirect_url included)."""
    return message_page(200, BRAND, "Short links are served from this address.")


def not_found() -> web.Response:
    return message_page(404, "Link not found", "This short link does not exist.")


def expired() -> web.Response:
    return message_page(410, "Link expired", "This short link has expired.")


def exhausted() -> web.Response:
    return message_page(410, "Link unavailable", "This short link has reached its click limit.")


def blocked() -> web.Response:
    return message_page(410, "Link blocked", "This short link points to a blocked destination.")


def rate_limited(retry_after: int = 60) -> web.Response:
    return message_page(
        429, "Too many requests", "Please wait a moment and try again.", {"Retry-After": str(retry_after)}
    )


def unavailable() -> web.Response:
    return message_page(503, "Temporarily unavailable", "Please try again in a moment.", {"Retry-After": "5"})


def password_form(*, error: bool = False) -> web.Response:
    """The form for a password-protected link; it posts back to the same URL."""
    notice = "<p class=error>Wrong password, please try again.</p>" if error else ""
    body = (
        "<p>This link is password protected.</p>"
        f"{notice}"
        "<form method=post action=''>"
        "<label for=password>Password</label><br>"
        "<input id=password name=password type=password autocomplete=current-password required autofocus>"
        " <input type=submit value=Continue></form>"
    )
    return _html(401 if error else 200, "Password required", body)
