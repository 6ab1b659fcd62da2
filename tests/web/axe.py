"""Accessibility check for browser tests: axe-core (vendored, pinned: tests/web/vendor/axe-core/VERSION)
run inside the page; `assert_accessible(page)` fails on any serious or critical violation.

The pages' CSP allows no inline script, so axe is evaluated through Playwright (the DevTools
protocol runs it outside the page's CSP) instead of being added as a <script> tag.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from playwright.async_api import Page

AXE_JS = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
# WCAG 2.0/2.1/2.2 A and AA plus axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


@cache
def _axe_source() -> str:
    return AXE_JS.read_text(encoding="utf-8")


async def axe_violations(page: Page, *, include: str | None = None) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now (or within the `include` selector)."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(_axe_source() + "\n;undefined")
    result: dict[str, Any] = await page.evaluate(
        """async ([include, tags]) => {
            const context = include ? { include: [include] } : document;
            return await axe.run(context, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
        }""",
        [include, TAGS],
    )
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = ", ".join(" ".join(node["target"]) for node in v["nodes"][:5])
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} — {targets}")
    return "\n".join(lines)


async def assert_accessible(page: Page, *, include: str | None = None) -> None:
    """No serious or critical axe-core violation on the page (minor and moderate are allowed)."""
    blocking = [v for v in await axe_violations(page, include=include) if v["impact"] in BLOCKING]
    assert not blocking, f"axe-core found serious/critical violations on {page.url}:\n{describe(blocking)}"
