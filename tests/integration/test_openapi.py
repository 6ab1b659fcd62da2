"""/openapi.json and /docs served by the api, and schemathesis against the in-process api.

Every documented operation is called with generated requests (schema-valid ones, plus a
schema-violating one for operations that take a body or query): no answer may be a 500 (nor an
undocumented 5xx), and each answer must have a documented status, content type and body schema.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration

# Operations that cannot be called safely or meaningfully by a generator.
EXCLUDED = {
    # Server-Sent Events: the answer is an endless stream, so the call would never return.
    ("GET", "/api/v1/stream/clicks"),
    # Ends the signed-in session that the other session-only operations use; called last instead.
    ("POST", "/api/v1/auth/logout"),
}
POSITIVE_EXAMPLES = 2  # per operation
NEGATIVE_EXAMPLES = 1  # per operation that takes a body or query parameters
PASSWORD = "openapi-fuzz-Password-9!"
STATUSES: Counter[str] = Counter()


def _server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 500 ever; another 5xx only where the operation documents it (e.g. 503 Stripe not configured)."""
    status = response.status_code
    documented = str(status) in case.operation.definition.raw.get("responses", {})
    if status == 500 or (status >= 500 and not documented):
        raise AssertionError(f"{status} server error: {response.text[:300]}")
    return None


CHECKS = [_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _takes_input(operation: Any) -> bool:
    raw = operation.definition.raw
    return "requestBody" in raw or any(p["in"] == "query" for p in raw.get("parameters", []))


def _fuzz(operation: Any, mode: GenerationMode, examples: int, base_url: str, headers: dict[str, str]) -> int:
    """Run `examples` generated cases of one operation; the number of requests sent."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        nonlocal sent
        response = case.call(base_url=base_url, headers=headers, timeout=15, allow_redirects=False)
        sent += 1
        STATUSES[f"{case.method} {case.path} {response.status_code}"] += 1
        checks = CHECKS if mode is GenerationMode.POSITIVE else [_server_error]
        case.validate_response(response, checks=checks, headers=headers)

    run()
    return sent


def _fuzz_all(spec: dict[str, Any], base_url: str, key: str, token: str) -> tuple[Counter[str], list[str]]:
    schema = schemathesis.openapi.from_dict(spec)
    sent: Counter[str] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        session_only = operation.definition.raw["security"] == [{"session": []}]
        headers = {"Authorization": f"Bearer {token if session_only else key}"}
        modes = [(GenerationMode.POSITIVE, POSITIVE_EXAMPLES)]
        if _takes_input(operation):
            modes.append((GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES))
        for mode, examples in modes:
            try:
                sent[label] += _fuzz(operation, mode, examples, base_url, headers)
            except (Exception, FailureGroup) as exc:
                failures.append(f"{label} ({mode.value}): {exc}"[:1500])
    return sent, failures


async def _lift_key_limit(dsn: str, workspace_id: str) -> None:
    """The free plan's 60 requests a minute per key would turn most generated calls into 429s."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE api_keys SET rate_limit = 1000000 WHERE workspace_id = $1", workspace_id)
    finally:
        await conn.close()


async def test_openapi_document_and_docs_page(api: Any) -> None:
    resp = await api.client.get("/openapi.json")
    assert resp.status == 200
    spec = await resp.json()
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    assert spec["servers"] == [{"url": api.settings.public_base_url.rstrip("/")}]
    assert spec["paths"]["/api/v1/links"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LinkCreate"
    }
    assert spec["paths"]["/api/v1/links/{link_id}"]["get"]["parameters"][0]["schema"]["format"] == "uuid"

    page = await api.client.get("/docs")
    assert page.status == 200 and page.content_type == "text/html"
    text = await page.text()
    assert "<script" not in text and "//cdn" not in text  # self-contained: no internet needed
    for path in ("/api/v1/links/{link_id}/rules", "/@{slug}", "/qr/{qr_id}.{fmt}", "/webhooks/stripe"):
        assert f"<code>{path}</code>" in text


async def test_schemathesis_finds_no_server_errors(api: Any) -> None:
    await _lift_key_limit(api.settings.database_url, api.workspace_id)
    signup = await api.client.post(
        "/api/v1/auth/signup", json={"email": "fuzz@example.test", "password": PASSWORD, "name": "Fuzz"}
    )
    assert signup.status == 201, await signup.text()
    token = (await signup.json())["access_token"]
    spec = await (await api.client.get("/openapi.json")).json()
    base_url = str(api.client.make_url("")).rstrip("/")

    started = time.monotonic()
    # schemathesis is synchronous: it runs in a thread while this loop serves its requests.
    sent, failures = await asyncio.to_thread(_fuzz_all, spec, base_url, api.api_key, token)
    elapsed = time.monotonic() - started

    assert not failures, "\n\n".join(failures)
    documented = sum(len(methods) for methods in spec["paths"].values())
    assert len(sent) == documented - len(EXCLUDED), sorted(sent)
    assert all(n >= 1 for n in sent.values())
    print("\n".join(f"{k}: {v}" for k, v in sorted(STATUSES.items())))
    print(f"schemathesis: {sum(sent.values())} requests over {len(sent)} operations in {elapsed:.1f}s")

    logout = await api.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert logout.status == 204
    after = await api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert after.status == 401 and (await after.json())["error"]["code"] == "unauthorized"
