"""The OpenAPI document is built from the router: every route is described, and the result is valid 3.1."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from api import openapi
from api.app import create_app
from engine.config import load_settings

BASE_URL = "https://lnk.example"


def _app() -> web.Application:
    settings = load_settings(database_url="postgresql://unused/x", secret_key="s" * 32, env="test")
    return create_app(settings)  # routes only: nothing is started


@pytest.fixture(scope="module")
def app() -> web.Application:
    return _app()


@pytest.fixture(scope="module")
def spec(app: web.Application) -> dict[str, Any]:
    return openapi.build_spec(app, BASE_URL + "/")


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, methods in spec["paths"].items() for m, op in methods.items()]


def test_every_route_has_a_registry_entry_and_no_entry_is_stale(app: web.Application) -> None:
    assert openapi.missing_operations(app) == []
    routes = set(openapi.route_keys(app))
    assert [key for key in openapi.OPERATIONS if key not in routes] == []
    assert any(path.startswith("/api/v1/") for _, path in routes)


def test_an_unregistered_route_is_reported() -> None:
    app = _app()
    app.router.add_get("/api/v1/new-thing", lambda _: web.Response())
    assert openapi.missing_operations(app) == [("GET", "/api/v1/new-thing")]


def test_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    assert spec["servers"] == [{"url": BASE_URL}]
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "session"}


def test_every_api_route_is_documented_once(app: web.Application, spec: dict[str, Any]) -> None:
    documented = {(m.upper(), p) for m, p, _ in _operations(spec)}
    assert documented == set(openapi.route_keys(app))
    assert ("GET", "/api/v1/links/{link_id}/rules/{rule_id}") in documented
    assert {
        ("GET", "/{code}"),
        ("GET", "/@{slug}"),
        ("GET", "/qr/{qr_id}.{fmt}"),
        ("POST", "/webhooks/stripe"),
    } <= documented
    ids = [op["operationId"] for _, _, op in _operations(spec)]
    assert len(ids) == len(set(ids))


def test_every_api_4xx_references_the_error_schema(spec: dict[str, Any]) -> None:
    for _, path, op in _operations(spec):
        if not path.startswith("/api/"):
            continue
        client_errors = {s: r for s, r in op["responses"].items() if s.startswith("4")}
        assert client_errors, path
        for response in client_errors.values():
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    error = spec["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message", "field"]


def test_ids_in_paths_are_uuids(spec: dict[str, Any]) -> None:
    for _, path, op in _operations(spec):
        for name in re.findall(r"{(\w+)}", path):
            [param] = [p for p in op["parameters"] if p["in"] == "path" and p["name"] == name]
            if name.endswith("_id"):
                assert param["schema"] == {"type": "string", "format": "uuid"}, (path, name)


def test_request_bodies_are_the_handlers_pydantic_models(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    create = schemas["LinkCreate"]
    assert create["required"] == ["url"] and create["additionalProperties"] is False
    assert schemas["BioLinkCreate"]["required"] == ["title", "url"]  # not confused with the links api's
    body = spec["paths"]["/api/v1/links/{link_id}"]["patch"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/LinkPatch"}
    refs = re.findall(r'"\$ref": "#/components/schemas/(\w+)"', str(spec).replace("'", '"'))
    assert set(refs) <= set(schemas)


def test_list_and_analytics_operations_take_query_parameters(spec: dict[str, Any]) -> None:
    def query(path: str) -> set[str]:
        return {p["name"] for p in spec["paths"][path]["get"]["parameters"] if p["in"] == "query"}

    assert {"q", "tag", "limit", "cursor", "sort"} <= query("/api/v1/links")
    assert {"from", "to", "interval", "tz", "limit", "format"} <= query("/api/v1/links/{link_id}/analytics")
    assert {"action", "limit", "cursor"} <= query("/api/v1/audit-logs")


def test_session_only_operations_say_so(spec: dict[str, Any]) -> None:
    assert spec["paths"]["/api/v1/users/me"]["get"]["security"] == [{"session": []}]
    assert spec["paths"]["/api/v1/links"]["get"]["security"] == [{"bearer": []}]
    assert spec["paths"]["/{code}"]["get"]["security"] == []


def test_docs_page_loads_the_vendored_swagger_ui_from_this_origin(spec: dict[str, Any]) -> None:
    page = openapi.render_docs(spec)
    sources = [s for s in re.findall(r"(?:src|href)='([^']+)'", page) if s != "data:,"]  # empty icon
    assert sources and all(src.startswith("/") and not src.startswith("//") for src in sources), sources
    assert "/docs/assets/swagger-ui/swagger-ui-bundle.js?v=" in page and "/docs/assets/docs.js?v=" in page
    # No inline script: every <script> has a src and an empty body.
    assert page.count("<script") == page.count("<script src=") == page.count("></script>") == 2
    for src in sources:
        if src.startswith("/docs/assets/"):
            assert (openapi.STATIC_DIR / src.split("?")[0].removeprefix("/docs/assets/")).is_file(), src
    vendored = openapi.STATIC_DIR / "swagger-ui"
    assert {"LICENSE", "NOTICE", "VENDORED.md"} <= {p.name for p in vendored.iterdir()}
    assert openapi.SWAGGER_UI_VERSION in (vendored / "VENDORED.md").read_text()


def test_docs_csp_allows_no_inline_script_and_only_the_documented_server() -> None:
    csp = openapi.docs_csp("https://sho.rt")
    assert "script-src 'self';" in csp and "unsafe" not in csp
    assert "connect-src 'self' https://sho.rt;" in csp


def test_every_list_answer_is_the_one_envelope(spec: dict[str, Any]) -> None:
    """A 2xx body with an array at its top level is `{"data": [...], "next_cursor"}`, nothing else."""
    schemas = spec["components"]["schemas"]
    lists = []
    for method, path, op in _operations(spec):
        for status, response in op["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
            props, required = schema.get("properties", {}), schema.get("required", [])
            arrays = [
                k for k, v in props.items() if v.get("type") == "array" and v["items"].get("type") != "string"
            ]
            # A wrapper of records: every key it requires is such an array or the cursor (a resource
            # requires its id; one-time secrets such as recovery codes are strings).
            if not status.startswith("2") or not arrays or not set(required) <= {*arrays, "next_cursor"}:
                continue
            lists.append(f"{method} {path}")
            assert arrays == ["data"] and set(required) == {"data", "next_cursor"}, (method, path)
    assert len(lists) >= 17, lists
