"""QR codes through the api: CRUD, validation, tenant isolation, images, and scan counting by the
worker (the api emits the scans, the click agent counts them into scan_count)."""

from __future__ import annotations

import base64
import io

import pytest
import zxingcpp
from PIL import Image

from tests.pipeline_fixtures import Pipeline, wait_until

pytestmark = pytest.mark.integration


def _decode(png: bytes) -> str:
    return zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("RGB"))[0].text


def _logo_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), "#0000ff").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


async def _link(api) -> dict:
    resp = await api.client.post(
        "/api/v1/links", json={"url": "https://dest.example.com/p"}, headers=api.auth
    )
    assert resp.status == 201
    return await resp.json()


async def test_dynamic_qr_round_trip_and_scan_count(api, pipeline: Pipeline) -> None:
    link = await _link(api)
    base = f"/api/v1/links/{link['id']}/qr-codes"
    resp = await api.client.post(base, json={"foreground_color": "#112233", "scale": 4}, headers=api.auth)
    assert resp.status == 201, await resp.text()
    qr = await resp.json()
    assert qr["qr_type"] == "dynamic" and qr["content"].endswith(
        f"/{link['short_code']}?qr={qr['scan_marker']}"
    )
    assert qr["png_url"].endswith(f"/qr/{qr['id']}.png") and qr["scan_count"] == 0

    resp = await api.client.get(f"/qr/{qr['id']}.png")  # public, unguessable id
    assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Cache-Control"].startswith("public")
    assert _decode(await resp.read()) == qr["content"]
    etag = resp.headers["ETag"]
    assert (await api.client.get(f"/qr/{qr['id']}.png", headers={"If-None-Match": etag})).status == 304
    svg = await api.client.get(f"/api/v1/qr/{qr['id']}.svg", headers=api.auth)
    assert svg.status == 200 and svg.headers["Content-Type"] == "image/svg+xml"
    assert (await svg.read()).startswith(b"<svg")
    assert (await api.client.get(f"/api/v1/qr/{qr['id']}.svg")).status == 401

    # Scanning = following the encoded URL: a redirect whose click is counted as a scan.
    path = "/" + qr["content"].split("/", 3)[3]
    for _ in range(3):
        resp = await api.client.get(path, allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "https://dest.example.com/p"
    await api.client.get(f"/{link['short_code']}", allow_redirects=False)  # not a scan

    async def counted() -> tuple[int, int] | None:  # (link clicks, scans), both set by the worker
        rows = await pipeline.pg(
            "SELECT l.total_clicks, q.scan_count FROM qr_codes q JOIN links l ON l.id = q.link_id WHERE q.id = $1",
            qr["id"],
        )
        counts = (rows[0]["total_clicks"], rows[0]["scan_count"])
        return counts if counts == (4, 3) else None

    assert await wait_until(counted, within=60), (await counted(), pipeline.worker.log_tail())
    resp = await api.client.get(f"/api/v1/links/{link['id']}/qr-codes/{qr['id']}", headers=api.auth)
    assert (await resp.json())["scan_count"] == 3


async def test_static_qr_with_logo(api) -> None:
    link = await _link(api)
    resp = await api.client.post(
        f"/api/v1/links/{link['id']}/qr-codes",
        json={"qr_type": "static", "error_correction": "L", "logo": _logo_b64(), "scale": 6},
        headers=api.auth,
    )
    qr = await resp.json()
    assert resp.status == 201 and qr["has_logo"] and qr["effective_error_correction"] == "H"
    png = await (await api.client.get(f"/api/v1/qr/{qr['id']}.png", headers=api.auth)).read()
    assert _decode(png) == "https://dest.example.com/p"
    resp = await api.client.patch(
        f"/api/v1/links/{link['id']}/qr-codes/{qr['id']}",
        json={"logo": None, "background_color": "#fafafa"},
        headers=api.auth,
    )
    updated = await resp.json()
    assert resp.status == 200 and not updated["has_logo"] and updated["effective_error_correction"] == "L"
    assert updated["background_color"] == "#FAFAFA"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"error_correction": "Z"}, "error_correction"),
        ({"foreground_color": "black"}, "foreground_color"),
        ({"background_color": "#12345"}, "background_color"),
        ({"scale": 0}, "scale"),
        ({"border": 99}, "border"),
        ({"qr_type": "weird"}, "qr_type"),
        ({"logo": "%%%"}, "logo"),
        ({"logo": base64.b64encode(b"GIF89a").decode()}, "logo"),
        ({"nope": 1}, "nope"),
    ],
)
async def test_invalid_qr_input_names_the_field(api, body, field) -> None:
    link = await _link(api)
    resp = await api.client.post(f"/api/v1/links/{link['id']}/qr-codes", json=body, headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == field


async def test_crud_and_tenant_isolation(api) -> None:
    link = await _link(api)
    base = f"/api/v1/links/{link['id']}/qr-codes"
    qr = await (await api.client.post(base, json={}, headers=api.auth)).json()
    listed = await (await api.client.get(base, headers=api.auth)).json()
    assert [q["id"] for q in listed["data"]] == [qr["id"]]
    other = await api.create_principal()
    headers = {"Authorization": f"Bearer {other['api_key']}"}
    assert (await api.client.get(base, headers=headers)).status == 404
    assert (await api.client.post(base, json={}, headers=headers)).status == 404
    assert (await api.client.get(f"{base}/{qr['id']}", headers=headers)).status == 404
    assert (await api.client.patch(f"{base}/{qr['id']}", json={"scale": 3}, headers=headers)).status == 404
    assert (await api.client.delete(f"{base}/{qr['id']}", headers=headers)).status == 404
    assert (await api.client.get(f"/api/v1/qr/{qr['id']}.png", headers=headers)).status == 404
    resp = await api.client.get(f"{base}/not-a-uuid", headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "qr_id"
    assert (await api.client.delete(f"{base}/{qr['id']}", headers=api.auth)).status == 204
    assert (await api.client.get(f"/qr/{qr['id']}.svg")).status == 404
