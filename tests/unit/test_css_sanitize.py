"""Bio page custom CSS sanitising and the page renderer's escaping."""

from __future__ import annotations

import pytest

from engine.bio.css import MAX_CSS_LENGTH, sanitize_css
from engine.bio.render import PageButton, render_bio_page
from engine.errors import ValidationFailed


@pytest.mark.parametrize(
    ("css", "banned"),
    [
        ("@import url(https://evil.example/x.css); a { color: red }", "@import"),
        ("a { background: url(javascript:alert(1)) }", "javascript"),
        ('a { background: url("javascript:alert(1)") }', "javascript"),
        ("a { background: url(data:text/html,hi) }", "data:"),
        ("a { width: expression(alert(1)) }", "expression"),
        ("a { behavior: url(x.htc) }", "behavior"),
        ("a { -moz-binding: url(https://x/y.xml#z) }", "binding"),
        ("p::after { content: '</style><script>alert(1)</script>' }", "</"),
        ("@font-face { font-family: x; src: url(https://x/f.woff) }", "font-face"),
        ("@media screen { a { background: url(javascript:x) } }", "javascript"),
    ],
)
def test_dangerous_css_is_removed(css, banned) -> None:
    out = sanitize_css(css) or ""
    assert banned not in out.lower()
    assert "<" not in out


def test_safe_css_is_kept() -> None:
    css = "h1 { color: #ff0000; font-size: 2rem !important } @media (max-width: 600px) { .bio { display: none } }"
    out = sanitize_css(css) or ""
    assert "h1 { color: #ff0000; font-size: 2rem !important }" in out
    assert "@media (max-width: 600px) { .bio { display: none } }" in out
    assert "url(https://cdn.example.com/bg.png)" in (
        sanitize_css("body{background:url(https://cdn.example.com/bg.png)}") or ""
    )


def test_empty_and_oversized_css() -> None:
    assert sanitize_css(None) is None and sanitize_css("   ") is None
    with pytest.raises(ValidationFailed) as err:
        sanitize_css("a{}" * (MAX_CSS_LENGTH // 3 + 1))
    assert err.value.field == "custom_css"


def _page(**over):
    page = {
        "title": "Ada <Lovelace>", "bio": 'Math & "engines"', "avatar_url": "https://img.example.com/a.png?x=1&y=2",
        "og_image_url": None, "meta_title": None, "meta_description": None, "custom_css": None,
    }  # fmt: skip
    page.update(over)
    return page


def test_render_escapes_everything_and_sets_seo_tags() -> None:
    html = render_bio_page(
        _page(custom_css="p { color: red }"),
        [PageButton(title="<b>Blog</b>", href="/@ada/l/1", icon="★")],
        canonical_url="https://lr.example.com/@ada",
        colors={"background": "red;}</style><script>", "button": "#123456"},
        font={"family": "</style>", "weight": 700},
    )
    assert "<script" not in html and html.count("</style>") == 2
    assert "<title>Ada &lt;Lovelace&gt;</title>" in html
    assert '<meta property="og:title" content="Ada &lt;Lovelace&gt;">' in html
    assert '<meta name="description" content="Math &amp; &quot;engines&quot;">' in html
    assert '<meta property="og:image" content="https://img.example.com/a.png?x=1&amp;y=2">' in html
    assert '<link rel="canonical" href="https://lr.example.com/@ada">' in html
    assert "&lt;b&gt;Blog&lt;/b&gt;" in html and 'href="/@ada/l/1"' in html
    assert "--btn:#123456" in html and "--bg:#FFFFFF" in html and "font:700" in html
    assert "<style>p { color: red }</style>" in html
    assert '<html lang="en">' in html and 'aria-label="Ada &lt;Lovelace&gt; links"' in html
