"""A/B results per variant and the link's own UTM values in the analytics API, against real
PostgreSQL, Redis and chDB with clicks of known ground truth (the api owns chDB here)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from api.analytics_client import DirectAnalytics
from api.state import ANALYTICS
from engine.clicks.models import EnrichedClick
from engine.db.clickhouse_schema import apply_clickhouse_schema
from streams.sinks.clickhouse import COLUMNS, to_row
from tests.conftest import ApiHarness
from tests.fakes.api import serve_settings

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
WINDOW = {"from": START.isoformat(), "to": (START + timedelta(days=2)).isoformat()}
UTM = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring-sale"}
VARIANTS = [
    {"id": "a", "url": "https://a.example/", "weight": 1},
    {"id": "b", "url": "https://b.example/", "weight": 1},
    {"id": "c", "url": "https://c.example/", "weight": 2},
]


def _click(
    link: str, ws: str, rule: str, variant: str, visitor: str, hours: float, **fields: Any
) -> EnrichedClick:
    base: dict[str, Any] = {
        "event_id": uuid.uuid4().hex, "ts": (START + timedelta(hours=hours)).timestamp(), "link_id": link,
        "workspace_id": ws, "domain": "", "short_code": "ab", "destination": "https://a.example/",
        "rule_id": rule, "variant": variant, "kind": "redirect", "method": "GET", "ip": "203.0.113.9",
        "user_agent": "UA/1.0", "referer": "", "referer_domain": "", "language": "en",
        "visitor_id": visitor, "is_unique": False, "is_bot": False, "is_preview": False,
    }  # fmt: skip
    base.update(fields)
    return EnrichedClick(**base)


def _arm(link: str, ws: str, rule: str, variant: str, visitors: int, returning: int) -> list[EnrichedClick]:
    """`visitors` visitors of one variant; the first `returning` of them click a second time."""
    clicks = [_click(link, ws, rule, variant, f"{variant}{i:04d}", 1 + i / 100) for i in range(visitors)]
    clicks += [_click(link, ws, rule, variant, f"{variant}{i:04d}", 20 + i / 100) for i in range(returning)]
    return clicks


class World:
    def __init__(
        self, api: ApiHarness, other: dict[str, str], link: dict[str, Any], rule: str, plain: str
    ) -> None:
        self.api, self.link, self.rule, self.plain = api, link, rule, plain
        self.other = {"Authorization": f"Bearer {other['api_key']}"}

    async def get(self, path: str, headers: dict[str, str] | None = None, **params: str) -> Any:
        return await self.api.client.get(path, params=params, headers=headers or self.api.auth)


@pytest_asyncio.fixture
async def world(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any
) -> AsyncIterator[World]:
    settings = make_settings(database_url=database_url, kafka_broker=broker.url, analytics_via_worker=False)
    async with serve_settings(settings) as api:
        other = await api.create_principal()
        client, auth = api.client, api.auth
        resp = await client.post("/api/v1/links", json={"url": "https://example.com/ab", **UTM}, headers=auth)
        assert resp.status == 201, await resp.text()
        link = await resp.json()
        resp = await client.post(
            f"/api/v1/links/{link['id']}/rules",
            json={"rule_type": "ab_test", "conditions": {"variants": VARIANTS}},
            headers=auth,
        )
        assert resp.status == 201, await resp.text()
        rule = (await resp.json())["id"]
        resp = await client.post("/api/v1/links", json={"url": "https://example.com/plain"}, headers=auth)
        plain = (await resp.json())["id"]
        ws, lid = api.workspace_id, link["id"]
        clicks = _arm(lid, ws, rule, "a", visitors=200, returning=20)  # return rate 10 %
        clicks += _arm(lid, ws, rule, "b", visitors=200, returning=60)  # return rate 30 %
        # Not counted: bots and previews, clicks outside the window, another link's clicks.
        clicks += [_click(lid, ws, rule, "a", f"bot{i}", 2, is_bot=True) for i in range(50)]
        clicks += [_click(lid, ws, rule, "b", "unfurl", 2, is_preview=True)]
        clicks += [_click(lid, ws, rule, "b", f"early{i}", -1) for i in range(30)]
        clicks += [_click(plain, ws, rule, "b", f"elsewhere{i}", 3) for i in range(30)]
        # A click without a visitor id is a click but not a visitor; a variant since removed.
        clicks += [_click(lid, ws, rule, "a", "", 5), _click(lid, ws, rule, "old", "v-old", 5)]
        analytics = client.server.app[ANALYTICS]
        assert isinstance(analytics, DirectAnalytics)
        rows = [to_row(c, 0, offset) for offset, c in enumerate(clicks)]
        await analytics.executor.run(apply_clickhouse_schema)
        await analytics.executor.run(lambda ch: ch.insert("clicks_analytics", rows, column_names=COLUMNS))
        yield World(api, other, link, rule, plain)


async def test_ab_report_per_variant_with_leader_and_confidence(world: World) -> None:
    resp = await world.get(f"/api/v1/links/{world.link['id']}/analytics/ab", **WINDOW)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["measure"] == "return_rate" and body["link_id"] == world.link["id"]
    [test] = body["tests"]
    assert test["rule_id"] == world.rule and test["is_active"] and not test["deleted"]
    by_id = {v["id"]: v for v in test["variants"]}
    assert [v["id"] for v in test["variants"]] == ["a", "b", "c", "old"]
    a, b, c, old = by_id["a"], by_id["b"], by_id["c"], by_id["old"]
    assert (a["clicks"], a["unique_visitors"], a["returning_visitors"]) == (221, 200, 20)
    assert (b["clicks"], b["unique_visitors"], b["returning_visitors"]) == (260, 200, 60)
    assert (c["clicks"], c["unique_visitors"], c["probability_best"]) == (0, 0, None)
    assert (old["clicks"], old["weight"], old["url"], old["probability_best"]) == (1, None, None, None)
    assert test["clicks"] == 482 and test["unique_visitors"] == 401
    assert (a["share"], b["share"]) == (round(221 / 482, 4), round(260 / 482, 4))
    assert (a["expected_share"], c["expected_share"], a["return_rate"], b["return_rate"]) == (
        0.25,
        0.5,
        0.1,
        0.3,
    )
    assert test["leader"] == "b" and test["significant"] and test["confidence"] > 0.99
    assert sum(v["probability_best"] or 0 for v in test["variants"]) == pytest.approx(1.0, abs=1e-3)


async def test_ab_window_without_returns_has_no_significant_leader(world: World) -> None:
    # Only the first hour: every visitor clicked once, so no variant is ahead.
    window = {"from": START.isoformat(), "to": (START + timedelta(hours=1, minutes=30)).isoformat()}
    body = await (await world.get(f"/api/v1/links/{world.link['id']}/analytics/ab", **window)).json()
    [test] = body["tests"]
    assert {v["id"]: v["returning_visitors"] for v in test["variants"]} == {"a": 0, "b": 0, "c": 0}
    assert not test["significant"] and test["confidence"] < 0.95


async def test_link_without_ab_rules_has_no_tests(world: World) -> None:
    body = await (await world.get(f"/api/v1/links/{world.plain}/analytics/ab", **WINDOW)).json()
    # The plain link's clicks carry a rule id that is not its own: reported, marked deleted.
    assert [(t["rule_id"], t["deleted"], t["clicks"]) for t in body["tests"]] == [(world.rule, True, 30)]


async def test_ab_report_is_scoped_and_validated(world: World) -> None:
    path = f"/api/v1/links/{world.link['id']}/analytics/ab"
    assert (await world.get(path, headers=world.other)).status == 404
    assert (await world.get(f"/api/v1/links/{uuid.uuid4()}/analytics/ab")).status == 404
    for params, field in (
        ({"interval": "day"}, "interval"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"from": "x"}, "from"),
    ):
        resp = await world.get(path, **params)
        assert resp.status == 422
        assert (await resp.json())["error"]["field"] == field
    assert (await world.get("/api/v1/links/not-a-uuid/analytics/ab")).status == 422


async def test_link_report_carries_the_links_own_utm_values(world: World) -> None:
    body = await (await world.get(f"/api/v1/links/{world.link['id']}/analytics", **WINDOW)).json()
    assert body["utm"] == {**UTM, "utm_term": None, "utm_content": None}
    body = await (await world.get(f"/api/v1/links/{world.plain}/analytics", **WINDOW)).json()
    assert body["utm"] == dict.fromkeys(
        ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
    )


async def test_openapi_documents_the_additions(world: World) -> None:
    spec = await (await world.api.client.get("/openapi.json")).json()
    op = spec["paths"]["/api/v1/links/{link_id}/analytics/ab"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {"from", "to", "tz", "link_id"}
    assert "leader" in spec["components"]["schemas"]["AbTest"]["required"]
    link_report = spec["paths"]["/api/v1/links/{link_id}/analytics"]["get"]["responses"]["200"]
    assert link_report["content"]["application/json"]["schema"]["$ref"].endswith("/LinkAnalytics")
    assert "utm" in spec["components"]["schemas"]["LinkAnalytics"]["required"]
