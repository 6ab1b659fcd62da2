"""The public bio page as one small, accessible HTML document. Every value is escaped here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from engine.bio.validation import DEFAULT_COLORS, DEFAULT_FONT, FONT_RE, THEME_COLOR_KEYS
from engine.qr.render import COLOR_RE


@dataclass(frozen=True, slots=True)
class PageButton:
    title: str
    href: str
    icon: str | None = None


def _theme_css(colors: Mapping[str, Any], font: Mapping[str, Any]) -> str:
    # Stored themes were validated on write; re-check so a bad row can't break out of the CSS.
    c = {k: v if isinstance(v, str) and COLOR_RE.match(v) else DEFAULT_COLORS[k] for k, v in colors.items()}
    palette = {**DEFAULT_COLORS, **{k: c[k] for k in THEME_COLOR_KEYS if k in c}}
    family = font.get("family")
    family = family if isinstance(family, str) and FONT_RE.match(family) else DEFAULT_FONT["family"]
    weight = font.get("weight")
    weight = weight if isinstance(weight, int) else int(DEFAULT_FONT["weight"])
    return (
        f":root{{--bg:{palette['background']};--fg:{palette['text']};--btn:{palette['button']};"
        f"--btn-fg:{palette['button_text']}}}"
        f"body{{margin:0;background:var(--bg);color:var(--fg);font:{int(weight)} 16px/1.5 '{family}',system-ui,sans-serif}}"
        "main{max-width:36rem;margin:0 auto;padding:3rem 1rem;text-align:center}"
        ".avatar{width:96px;height:96px;border-radius:50%;object-fit:cover}"
        "h1{font-size:1.5rem;margin:.75rem 0 .25rem}.bio{margin:0 0 1.5rem;white-space:pre-line}"
        "ul{list-style:none;margin:0;padding:0}li{margin:.75rem 0}"
        ".button{display:block;padding:.9rem 1rem;border-radius:.75rem;background:var(--btn);"
        "color:var(--btn-fg);text-decoration:none;font-weight:600}"
        ".button:focus-visible{outline:3px solid var(--fg);outline-offset:3px}"
    )


def render_bio_page(
    page: Mapping[str, Any],
    buttons: Sequence[PageButton],
    *,
    canonical_url: str,
    colors: Mapping[str, Any] | None = None,
    font: Mapping[str, Any] | None = None,
) -> str:
    """`page` is a bio_pages row; `custom_css` must already be sanitised (engine.bio.css)."""
    title = page["meta_title"] or page["title"]
    description = page["meta_description"] or (page["bio"] or "")[:300]
    head = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f'<link rel="canonical" href="{escape(canonical_url)}">',
        f'<meta property="og:type" content="profile"><meta property="og:title" content="{escape(title)}">',
        f'<meta property="og:url" content="{escape(canonical_url)}">',
        '<meta name="twitter:card" content="summary">',
    ]
    if description:
        head.append(f'<meta name="description" content="{escape(description)}">')
        head.append(f'<meta property="og:description" content="{escape(description)}">')
    image = page["og_image_url"] or page["avatar_url"]
    if image:
        head.append(f'<meta property="og:image" content="{escape(image)}">')
    head.append(f"<style>{_theme_css(colors or {}, font or {})}</style>")
    if page["custom_css"]:
        head.append("<style>" + page["custom_css"].replace("<", "\\3c ") + "</style>")
    body = ["</head><body><main>"]
    if page["avatar_url"]:
        body.append(f'<img class="avatar" src="{escape(page["avatar_url"])}" alt="" width="96" height="96">')
    body.append(f"<h1>{escape(page['title'])}</h1>")
    if page["bio"]:
        body.append(f'<p class="bio">{escape(page["bio"])}</p>')
    body.append(f'<nav aria-label="{escape(page["title"])} links"><ul>')
    for button in buttons:
        icon = (
            f'<span aria-hidden="true">{escape(button.icon)} </span>' if button.icon else ""
        )  # space hidden too: clean accessible name
        body.append(
            f'<li><a class="button" href="{escape(button.href)}" rel="noopener">{icon}{escape(button.title)}</a></li>'
        )
    body.append("</ul></nav></main></body></html>")
    return "".join(head + body)
