"""/openapi.json and /docs served by the api, and schemathesis against the in-process api.

Every documented operation is called with generated requests (schema-valid ones, plus a
schema-violating one for operations that take a body or query): no answer may be a 500 (nor an
undocumented 5xx), and each answer must have a documented status, content type and body schema.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from datetime import datetime
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.helpers import seed_resources

pytestmark = pytest.mark.integration

# Operations that cannot be called safely or meaningfully by a generator.
EXCLUDED = {
    # Server-Sent Events: the answer is an endless stream, so the call would never return.
    ("GET", "/api/v1/stream/clicks"),
    # Ends the signed-in session that the other session-only operations use; called last instead.
    ("POST", "/api/v1/auth/logout"),
}
# Deleting the caller's own workspace, or leaving it, would end the run for everything after it.
NEVER_SEEDED = {
    ("DELETE", "/api/v1/workspaces/{workspace_id}"),
    ("DELETE", "/api/v1/workspaces/{workspace_id}/members/{user_id}"),
}
# Per operation; LINKRIFT_FUZZ_EXAMPLES=50 makes a longer, randomised hunt (off in CI: seconds matter).
POSITIVE_EXAMPLES = int(os.environ.get("LINKRIFT_FUZZ_EXAMPLES", "2"))
NEGATIVE_EXAMPLES = max(1, POSITIVE_EXAMPLES // 2)  # per operation that takes a body or query parameters
PASSWORD = "openapi-fuzz-Password-9!"
STATUSES: Counter[str] = Counter()
# Datetimes at and beyond the edges of what Python and PostgreSQL hold (offsets push year 9999
# past the end in UTC, year 1 before the start), mixed into every date-time the generator makes.
DATETIME_EXTREMES = (
    "9999-12-31T23:59:59-12:00",
    "9999-12-31T23:59:59.999999+00:00",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "2000-02-29T12:00:00+05:45",
)
schemathesis.openapi.format(
    "date-time",
    st.one_of(
        st.sampled_from(DATETIME_EXTREMES),
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
            lambda d: d.isoformat() + "Z"
        ),
    ),
)


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


def _seeded_ids(operation: Any, seeds: dict[str, str]) -> dict[str, str]:
    """Path parameters naming resources that exist, so the handler gets past its 404."""
    if (operation.method.upper(), operation.path) in NEVER_SEEDED:
        return {}
    bio = operation.path.startswith("/api/v1/bio-pages/")
    return {
        name: seeds["bio_link_id" if bio and name == "link_id" else name]
        for name in re.findall(r"{(\w+)}", operation.path) if name in seeds
    }  # fmt: skip


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    base_url: str,
    headers: dict[str, str],
    ids: dict[str, str],
) -> int:
    """Run `examples` generated cases of one operation; the number of requests sent.

    In positive mode every other case targets the seeded resources instead of random ids."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize="LINKRIFT_FUZZ_EXAMPLES" not in os.environ,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        nonlocal sent
        if mode is GenerationMode.POSITIVE and sent % 2 == 1 and ids:
            case.path_parameters = {**(case.path_parameters or {}), **ids}
        response = case.call(base_url=base_url, headers=headers, timeout=15, allow_redirects=False)
        sent += 1
        STATUSES[f"{case.method} {case.path} {response.status_code}"] += 1
        checks = CHECKS if mode is GenerationMode.POSITIVE else [_server_error]
        case.validate_response(response, checks=checks, headers=headers)

    run()
    return sent


def _fuzz_all(
    spec: dict[str, Any],
    base_url: str,
    key: str,
    token: str,
    seeds: dict[str, str],
    session_seeds: dict[str, str],
) -> tuple[Counter[str], list[str]]:
    """`key` and `seeds` serve most operations; session-only ones act as the signed-in user (`token`)."""
    schema = schemathesis.openapi.from_dict(spec)
    sent: Counter[str] = Counter()
    failures: list[str] = []
    # Deletes go last, so the seeded resources are there for every other operation.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()), key=lambda op: op.method.upper() == "DELETE"
    )
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        session_only = operation.definition.raw["security"] == [{"session": []}]
        headers = {"Authorization": f"Bearer {token if session_only else key}"}
        ids = _seeded_ids(operation, {**seeds, **session_seeds} if session_only else seeds)
        modes = [(GenerationMode.POSITIVE, POSITIVE_EXAMPLES)]
        if _takes_input(operation):
            modes.append((GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES))
        for mode, examples in modes:
            try:
                sent[label] += _fuzz(operation, mode, examples, base_url, headers, ids)
            except (Exception, FailureGroup) as exc:
                failures.append(f"{label} ({mode.value}): {exc}"[:1500])
    return sent, failures


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def _extreme_values(spec: dict[str, Any], schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """(field, value) pairs for a body schema: each free-form object property (settings, colours,
    conditions, ...) and one unknown field get JSON nested 40 and 300 levels deep and a 64 KiB
    object; each date-time property gets every DATETIME_EXTREMES value."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    big = {f"k{i}": "v" * 64 for i in range(1000)}
    out: list[tuple[str, Any]] = [("extra", v) for v in (_nested(40), _nested(300), big)]
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf", [prop])
        if any(o.get("type") == "object" and "properties" not in o for o in options):
            out += [(name, v) for v in (_nested(40), _nested(300), big)]
        if any(o.get("format") == "date-time" for o in options):
            out += [(name, v) for v in DATETIME_EXTREMES]
    return out


def _fill(path: str, ids: dict[str, str]) -> str:
    """`path` with its parameters replaced by the seeded ids (a bio page's `link_id` is its button)."""
    bio = path.startswith("/api/v1/bio-pages/")
    return re.sub(
        r"{(\w+)}", lambda m: ids.get("bio_link_id" if bio and m[1] == "link_id" else m[1], m[1]), path
    )


async def _body_extremes(
    api: Any, spec: dict[str, Any], seeds: dict[str, str], token: str, session_seeds: dict[str, str]
) -> list[str]:
    """Every JSON-body operation with the values of `_extreme_values`, one field at a time, to the
    seeded resources: never a 500 (nor an undocumented 5xx)."""
    failures = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None or (method.upper(), path) in EXCLUDED | NEVER_SEEDED:
                continue
            session_only = op["security"] == [{"session": []}]
            url = _fill(path, {**seeds, **session_seeds} if session_only else seeds)
            headers = {"Authorization": f"Bearer {token if session_only else api.api_key}"}
            for field, value in _extreme_values(spec, body["schema"]):
                resp = await api.client.request(method.upper(), url, json={field: value}, headers=headers)
                STATUSES[f"{method.upper()} {path} {resp.status} (extreme {field})"] += 1
                if resp.status == 500 or (resp.status > 500 and str(resp.status) not in op["responses"]):
                    failures.append(
                        f"{method.upper()} {path} {field}: {resp.status} {await resp.text()}"[:500]
                    )
    return failures


async def _upgrade(dsn: str, workspace_id: str) -> None:
    """The free plan's 60 requests a minute per key (and no custom domains) would turn most calls into 429s."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE workspaces SET plan = 'business' WHERE id = $1", workspace_id)
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
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]
    text = await page.text()
    assert "//cdn" not in text and "https://" not in text  # self-contained: no internet needed
    # The vendored assets are served by the api itself (the browser test renders them).
    for asset in ("swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css", "docs.js"):
        resp = await api.client.get(f"/docs/assets/{asset}")
        assert resp.status == 200 and len(await resp.read()) > 100, asset
    assert (await api.client.get("/docs/assets/../openapi.py")).status == 404


async def test_schemathesis_finds_no_server_errors(api: Any) -> None:
    await _upgrade(api.settings.database_url, api.workspace_id)
    signup = await api.client.post(
        "/api/v1/auth/signup", json={"email": "fuzz@example.test", "password": PASSWORD, "name": "Fuzz"}
    )
    assert signup.status == 201, await signup.text()
    user = await signup.json()
    token = user["access_token"]
    session_seeds = {"workspace_id": user["workspace_id"], "user_id": user["user"]["id"]}
    seeds = await seed_resources(api)
    spec = await (await api.client.get("/openapi.json")).json()
    base_url = str(api.client.make_url("")).rstrip("/")
    extreme_failures = await _body_extremes(api, spec, seeds, token, session_seeds)
    assert not extreme_failures, "\n".join(extreme_failures)

    started = time.monotonic()
    # schemathesis is synchronous: it runs in a thread while this loop serves its requests.
    sent, failures = await asyncio.to_thread(
        _fuzz_all, spec, base_url, api.api_key, token, seeds, session_seeds
    )
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


async def test_inputs_that_were_500s_are_422s_naming_the_field(api: Any) -> None:
    """Found by schemathesis or probing the documented parameters; each used to answer 500."""
    link = await api.client.post("/api/v1/links", json={"url": "https://example.com/r"}, headers=api.auth)
    link_id = (await link.json())["id"]
    rule = {
        "rule_type": "device",
        "conditions": {"device_types": ["mobile"]},
        "destination_url": "https://e.com",
    }
    multipart = (
        b'--b\r\nContent-Disposition: form-data; name="\x1e\x7f"\r\n\r\nx\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nurl\r\n--b--\r\n'
    )
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("PATCH", f"/api/v1/links/{link_id}", {"json": {"title": "a\x00b"}}, "title"),
        ("POST", "/api/v1/tags", {"json": {"name": "x", "color": "#000000", "\x00": 1}}, "\x00"),
        (
            "POST",
            "/api/v1/links/bulk",
            {"json": {"links": [{"url": "https://e.com", "tags": ["a\x00"]}]}},
            "links[0].tags[0]",
        ),
        ("GET", "/api/v1/links?q=a%00b", {}, "q"),
        ("GET", "/api/v1/audit-logs?action=%00", {}, "action"),
        ("GET", "/a%00b", {}, "code"),
        ("GET", "/api/v1/links?created_from=0001-01-01T00:00:00%2B05:00", {}, "created_from"),
        ("GET", "/api/v1/audit-logs?from=0001-01-01T00:00:00%2B05:00", {}, "from"),
        ("GET", "/api/v1/analytics?to=0001-01-01T01:15:17Z", {}, "to"),
        ("GET", f"/api/v1/webhooks/{link_id}/deliveries?limit=%C2%B2", {}, "limit"),
        ("POST", f"/api/v1/links/{link_id}/rules", {"json": {**rule, "weight": 10**12}}, "weight"),
        (
            "POST",
            "/api/v1/links/import",
            {"data": multipart, "headers": {"Content-Type": "multipart/form-data; boundary=b"}},
            "file",
        ),
    ]
    for method, path, kwargs, field in cases:
        headers = {**api.auth, **kwargs.pop("headers", {})}
        resp = await api.client.request(method, path, headers=headers, allow_redirects=False, **kwargs)
        body = await resp.json()
        assert (resp.status, body["error"]["field"]) == (422, field), (method, path, body)
