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


def test_docs_page_lists_every_operation_without_external_assets(spec: dict[str, Any]) -> None:
    page = openapi.render_docs(spec)
    for method, path, op in _operations(spec):
        assert f"id='{op['operationId']}'" in page, (method, path)
    assert "<script" not in page and "src=" not in page and "stylesheet" not in page
    assert page.count("<h2 id='tag-") == len(spec["tags"])
