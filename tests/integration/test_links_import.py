"""CSV import (api and CLI) of each supported export format, and the CSV export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from engine.audit import AuditContext
from engine.db.pool import create_pool
from engine.links import importers

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parent.parent / "data" / "imports"


async def _codes(api) -> dict[str, dict]:
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        rows = await conn.fetch(
            """SELECT l.short_code, l.url, l.title, array_remove(array_agg(t.name ORDER BY t.name), NULL) AS tags
               FROM links l LEFT JOIN link_tags lt ON lt.link_id = l.id LEFT JOIN tags t ON t.id = lt.tag_id
               WHERE l.workspace_id = $1 GROUP BY l.id""",
            api.workspace_id,
        )
    finally:
        await conn.close()
    return {r["short_code"]: dict(r) for r in rows}


@pytest.mark.parametrize(
    ("name", "fmt", "imported", "errors", "codes"),
    [
        ("bitly.csv", "bitly", 2, [(4, "url")], {"sprng24", "guide-x"}),
        ("shlink.csv", "shlink", 2, [(4, "short_code")], {"shl-one", "shl-two"}),
        ("kutt.csv", "kutt", 2, [], {"kutt-a", "kutt-b"}),
        ("yourls.csv", "yourls", 2, [(3, "url")], {"yrl1", "yrl3"}),
        ("plain.csv", "plain", 2, [(4, "short_code")], {"plain-a"}),
    ],
)
async def test_import_each_format(api, name, fmt, imported, errors, codes) -> None:
    form = aiohttp.FormData()
    form.add_field("file", (DATA / name).read_bytes(), filename=name, content_type="text/csv")
    resp = await api.client.post("/api/v1/links/import", data=form, headers=api.auth)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["format"], report["imported"], report["failed"]) == (fmt, imported, len(errors))
    assert [(e["row"], e["field"]) for e in report["errors"]] == errors
    stored = await _codes(api)
    assert codes <= set(stored) and len(stored) == imported


async def test_imported_tags_titles_and_outbox(api) -> None:
    body = (DATA / "shlink.csv").read_bytes()
    resp = await api.client.post(
        "/api/v1/links/import", data=body, headers={**api.auth, "Content-Type": "text/csv"}
    )
    assert (await resp.json())["imported"] == 2
    stored = await _codes(api)
    assert stored["shl-one"]["title"] == "First post" and stored["shl-one"]["tags"] == ["blog", "news"]
    assert (await api.client.get("/shl-one", allow_redirects=False)).headers[
        "Location"
    ] == "https://blog.example.com/post/1"
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        events = await conn.fetchval("SELECT count(*) FROM outbox WHERE payload->>'event' = 'created'")
        audits = await conn.fetchval("SELECT count(*) FROM audit_logs WHERE action = 'link.imported'")
    finally:
        await conn.close()
    assert (events, audits) == (2, 1)


async def test_taken_codes_are_row_errors_and_reimport_is_harmless(api) -> None:
    headers = {**api.auth, "Content-Type": "text/csv"}
    body = (DATA / "kutt.csv").read_bytes()
    assert (await (await api.client.post("/api/v1/links/import", data=body, headers=headers)).json())[
        "imported"
    ] == 2
    report = await (await api.client.post("/api/v1/links/import", data=body, headers=headers)).json()
    assert report["imported"] == 0
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, "short_code"), (3, "short_code")]


async def test_import_input_errors(api) -> None:
    headers = {**api.auth, "Content-Type": "text/csv"}
    resp = await api.client.post("/api/v1/links/import", data=b"a,b\n1,2\n", headers=headers)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "file"
    resp = await api.client.post("/api/v1/links/import?format=excel", data=b"url\n", headers=headers)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "format"
    resp = await api.client.post("/api/v1/links/import", data=b"url\n\xff\xfe\n", headers=headers)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "file"
    big = b"url\n" + b"https://e.test/" + b"x" * (6 * 1024 * 1024)
    resp = await api.client.post("/api/v1/links/import", data=big, headers=headers)
    assert resp.status == 413 and (await resp.json())["error"]["field"] == "file"


async def test_failed_batch_rolls_back_whole_batch(api, monkeypatch) -> None:
    """A database failure inside a batch leaves none of that batch's rows behind."""
    real = importers._insert_batch
    calls = 0

    async def failing_second_batch(conn, target, batch):
        nonlocal calls
        calls += 1
        await real(conn, target, batch)
        if calls == 2:
            await conn.execute("SELECT 1/0")

    monkeypatch.setattr(importers, "_insert_batch", failing_second_batch)
    text = "url,short_code\n" + "".join(f"https://e.test/{i},code-{i:03d}\n" for i in range(5))
    parsed = importers.parse_csv(text)
    pool = await create_pool(api.settings.database_url, max_size=1)  # with the jsonb codec
    try:
        async with pool.acquire() as conn:
            target = importers.ImportTarget(
                api.workspace_id, api.user_id, "t.links.changes", AuditContext(api.user_id)
            )
            report = await importers.import_rows(conn, target, parsed, batch_size=2)
            count = await conn.fetchval("SELECT count(*) FROM links")
    finally:
        await pool.close()
    assert (report.imported, report.failed, count) == (3, 2, 3)
    assert [e.row for e in report.errors] == [4, 5]


async def test_export_csv_round_trips_as_plain_import(api) -> None:
    for i in range(3):
        await api.client.post(
            "/api/v1/links",
            json={
                "url": f"https://export.example/{i}",
                "short_code": f"exp-{i}",
                "title": f"=cmd{i}",
                "tags": ["t"],
            },
            headers=api.auth,
        )
    resp = await api.client.get("/api/v1/links/export.csv?q=exp-", headers=api.auth)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [r["short_code"] for r in rows] == ["exp-0", "exp-1", "exp-2"]
    assert rows[0]["title"] == "'=cmd0" and rows[0]["tags"] == "t" and rows[0]["total_clicks"] == "0"
    assert importers.parse_csv(await resp.text()).format == "plain"
    other = await api.create_principal()
    resp = await api.client.get(
        "/api/v1/links/export.csv", headers={"Authorization": f"Bearer {other['api_key']}"}
    )
    assert len(list(csv.DictReader(io.StringIO(await resp.text())))) == 0
    resp = await api.client.get("/api/v1/links/export.csv?active=nope", headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "active"


async def test_cli_import(api) -> None:
    from rich.console import Console

    from cli.importer import run_import

    parsed = importers.parse_csv((DATA / "yourls.csv").read_text())
    report = await run_import(api.settings, parsed, api.workspace_id, None, Console(file=io.StringIO()))
    assert (report.imported, report.failed) == (2, 1)
    assert {"yrl1", "yrl3"} <= set(await _codes(api))
