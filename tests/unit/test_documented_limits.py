"""The limits the docs and the OpenAPI description state are the code's constants (doc drift)."""

from __future__ import annotations

import re
from pathlib import Path

from api import openapi
from api.links import MAX_IMPORT_BYTES
from engine.billing.plans import PLANS, Plan
from engine.links.importers import _REQUIRED, BATCH_SIZE, MAX_ROWS
from engine.links.search import MAX_LIMIT
from engine.links.service import MAX_BULK

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _number(text: str) -> int | None:
    return None if text.strip() in ("∞", "") else int(text.replace(",", "").replace(" ", ""))


def _doc(name: str) -> str:
    return " ".join((DOCS / name).read_text().split())  # line breaks do not matter


def test_plan_table_matches_the_plans() -> None:
    rows = {}
    for line in (DOCS / "webhooks-billing.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in {p.value for p in Plan}:
            rows[cells[0]] = [_number(c) for c in cells[1:]]
    assert set(rows) == {p.value for p in Plan}
    for plan, limits in PLANS.items():
        assert rows[plan.value] == [
            limits.links_per_month,
            limits.clicks_per_month,
            limits.custom_domains,
            limits.members,
            limits.api_requests_per_minute,
            limits.retention_days,
        ], plan


def test_key_rate_limits_and_domain_limits_in_the_docs() -> None:
    accounts = _doc("api-accounts.md")
    stated = dict(
        re.findall(r"(free|pro|business|enterprise) (\d+)", accounts.split("plan default (", 1)[1][:120])
    )
    assert {p: int(n) for p, n in stated.items()} == {p.value: PLANS[p].api_requests_per_minute for p in Plan}
    domains = _doc("api-domains-qr-bio.md")
    assert "not limited" not in domains and "unlimited" not in domains.replace("enterprise unlimited", "")
    for plan in (Plan.FREE, Plan.PRO, Plan.BUSINESS):
        assert f"{plan.value} {PLANS[plan].custom_domains}" in domains, plan
    assert PLANS[Plan.ENTERPRISE].custom_domains is None and "enterprise unlimited" in domains


def test_link_limits_in_the_docs() -> None:
    links = _doc("api-links.md")
    assert f"up to {MAX_BULK} ..." in links
    assert f"at most {MAX_IMPORT_BYTES // (1024 * 1024)} MiB" in links
    assert f"{MAX_ROWS:,} rows".replace(",", " ") in links
    assert f"batches of {BATCH_SIZE}" in links
    assert f"`limit` 1\u2013{MAX_LIMIT} (default 20)" in links  # an en dash, as the docs write ranges


def test_openapi_states_the_code_limits_and_only_supported_import_formats() -> None:
    bulk = openapi.OPERATIONS[("POST", "/api/v1/links/bulk")].summary
    assert f"up to {MAX_BULK} links" in bulk
    numbers = {int(n) for n in re.findall(r"\d+", bulk)}
    assert numbers == {MAX_BULK}
    summary = openapi.OPERATIONS[("POST", "/api/v1/links/import")].summary.lower()
    named = {"bitly", "shlink", "kutt", "yourls", "rebrandly", "rebrandly's"}
    claimed = {word.strip(",.()") for word in summary.split()} & named
    assert claimed == set(_REQUIRED) - {"plain"}
