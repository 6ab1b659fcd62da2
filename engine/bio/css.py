"""Sanitise a bio page's custom CSS by parsing it (tinycss2) and keeping only what is safe.

Kept: style rules, and @media/@supports blocks of style rules. Dropped: every other at-rule
(@import, @font-face, @namespace...), `expression()`, `behavior`/`-moz-binding`, and any url()
that is not https. The output cannot close the <style> element: every `<` is CSS-escaped.
"""

from __future__ import annotations

from collections.abc import Iterable

import tinycss2
from tinycss2 import ast

from engine.errors import ValidationFailed

MAX_CSS_LENGTH = 20_000
_NESTING_AT_RULES = ("media", "supports")
_BANNED_PROPERTIES = ("behavior", "-moz-binding", "-ms-behavior")
_BANNED_FUNCTIONS = ("expression", "image-set", "-webkit-image-set", "element", "env")


def _safe_url(value: str) -> bool:
    return value.strip().lower().startswith("https://")


def _tokens_safe(tokens: Iterable[ast.Node]) -> bool:
    for token in tokens:
        if isinstance(token, ast.ParseError):
            return False
        if isinstance(token, ast.URLToken) and not _safe_url(token.value):
            return False
        if isinstance(token, ast.FunctionBlock):
            name = token.lower_name
            if name in _BANNED_FUNCTIONS:
                return False
            if name == "url":
                strings = [t for t in token.arguments if isinstance(t, ast.StringToken)]
                if len(strings) != 1 or not _safe_url(strings[0].value):
                    return False
            if not _tokens_safe(token.arguments):
                return False
        if isinstance(token, ast.StringToken | ast.IdentToken) and "javascript:" in token.value.lower():
            return False
        if isinstance(token, ast.SquareBracketsBlock | ast.ParenthesesBlock | ast.CurlyBracketsBlock):
            if not _tokens_safe(token.content):
                return False
    return True


def _declarations(content: list[ast.Node] | None) -> str:
    out = []
    for decl in tinycss2.parse_blocks_contents(content or [], skip_comments=True, skip_whitespace=True):
        if not isinstance(decl, ast.Declaration):
            continue
        name = decl.lower_name
        if name in _BANNED_PROPERTIES or not _tokens_safe(decl.value):
            continue
        value = tinycss2.serialize(decl.value).strip()
        out.append(f"{name}: {value}{' !important' if decl.important else ''}")
    return "; ".join(out)


def _rules(nodes: Iterable[ast.Node]) -> list[str]:
    out = []
    for node in nodes:
        if isinstance(node, ast.QualifiedRule):
            if not _tokens_safe(node.prelude):
                continue
            selector = tinycss2.serialize(node.prelude).strip()
            if selector:
                out.append(f"{selector} {{ {_declarations(node.content)} }}")
        elif (
            isinstance(node, ast.AtRule)
            and node.lower_at_keyword in _NESTING_AT_RULES
            and node.content is not None
        ):
            if not _tokens_safe(node.prelude):
                continue
            inner = _rules(tinycss2.parse_rule_list(node.content, skip_comments=True, skip_whitespace=True))
            prelude = tinycss2.serialize(node.prelude).strip()
            out.append(f"@{node.lower_at_keyword} {prelude} {{ {' '.join(inner)} }}")
    return out


def sanitize_css(css: str | None, *, field: str = "custom_css") -> str | None:
    """Safe CSS for a <style> element, or None for empty input."""
    if css is None or not css.strip():
        return None
    if len(css) > MAX_CSS_LENGTH:
        raise ValidationFailed(f"{field} is longer than {MAX_CSS_LENGTH} characters", field=field)
    nodes = tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True)
    cleaned = "\n".join(_rules(nodes))
    return cleaned.replace("<", "\\3c ") or None
