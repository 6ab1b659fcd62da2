"""CSV import (api and CLI) of each supported export format, and the CSV export."""

from __future__ import annotations

import csv
import io
import socket
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from engine.audit import AuditContext
from engine.clicks.pg_sink import flush_link_counters
from engine.db.pool import create_pool
from engine.links import importers
from tests.integration._api_server import serve_api

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


async def test_a_row_the_database_refuses_costs_only_itself(api, monkeypatch) -> None:
    """A database failure inside a batch rolls the batch back; its rows are then retried one by
    one, so the good rows of that batch are kept and only the bad one is reported."""
    real = importers._insert_batch

    async def failing_on_code_003(conn, target, batch):
        await real(conn, target, batch)
        if any(r.short_code == "code-003" for r in batch):
            await conn.execute("SELECT 1/0")

    monkeypatch.setattr(importers, "_insert_batch", failing_on_code_003)
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
    assert (report.imported, report.failed, count) == (4, 1, 4)
    assert [(e.row, e.field) for e in report.errors] == [(5, "row")]


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
    links = await _links_by_code(api)
    assert (links["yrl1"]["created_at"], links["yrl1"]["total_clicks"]) == ("2023-12-01T08:00:00+00:00", 42)
    assert (links["yrl3"]["created_at"], links["yrl3"]["imported_clicks"]) == ("2023-12-03T08:00:00+00:00", 7)


# --- source dates and click counts ---------------------------------------------------------------


async def _post_csv(api, text: str, auth: dict | None = None) -> dict:
    resp = await api.client.post(
        "/api/v1/links/import",
        data=text.encode(),
        headers={**(auth or api.auth), "Content-Type": "text/csv"},
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _links_by_code(api) -> dict[str, dict]:
    resp = await api.client.get("/api/v1/links?limit=100", headers=api.auth)
    assert resp.status == 200, await resp.text()
    return {link["short_code"]: link for link in (await resp.json())["data"]}


async def _track(api, counters: dict[str, tuple[int, int]]) -> None:
    """What the worker does once clicks arrive: absolute tracked counts, written by pg_sink."""
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        await flush_link_counters(conn, counters)
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "bitly.csv",
            {"sprng24": ("2024-03-01T10:00:00+00:00", 1204), "guide-x": ("2024-03-02T11:00:00+00:00", 0)},
        ),
        (
            "shlink.csv",
            {"shl-one": ("2024-01-05T09:30:00+00:00", 12), "shl-two": ("2024-01-06T09:30:00+00:00", 3)},
        ),
        (
            "kutt.csv",
            {"kutt-a": ("2024-02-01T00:00:00+00:00", 5), "kutt-b": ("2024-02-02T00:00:00+00:00", 0)},
        ),
        (
            "yourls.csv",
            {"yrl1": ("2023-12-01T08:00:00+00:00", 42), "yrl3": ("2023-12-03T08:00:00+00:00", 7)},
        ),
    ],
)
async def test_import_keeps_source_dates_and_counts(api, name, expected) -> None:
    report = await _post_csv(api, (DATA / name).read_text())
    assert report["imported"] == 2
    links = await _links_by_code(api)
    got = {code: (links[code]["created_at"], links[code]["total_clicks"]) for code in expected}
    assert got == expected
    for code, (_, clicks) in expected.items():
        link = links[code]
        assert (link["imported_clicks"], link["tracked_clicks"]) == (clicks, 0)
        assert link["imported_at"] is not None and link["imported_at"] > link["created_at"]
        one = await (await api.client.get(f"/api/v1/links/{link['id']}", headers=api.auth)).json()
        assert (one["created_at"], one["total_clicks"]) == expected[code]


async def test_bad_dates_and_counts_are_row_errors_and_not_imported(api) -> None:
    text = (
        "createdAt,shortCode,longUrl,visits\n"
        "last tuesday,bad-date,https://a.example,1\n"
        "2024-01-01T00:00:00Z,bad-count,https://a.example,-1\n"
        "1704067200,good-one,https://a.example,8\n"
    )
    report = await _post_csv(api, text)
    assert (report["imported"], report["failed"]) == (1, 2)
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, "created_at"), (3, "clicks")]
    assert report["errors"][0]["message"].startswith("createdAt ")
    assert report["errors"][1]["message"].startswith("visits ")
    links = await _links_by_code(api)
    assert set(links) == {"good-one"}
    assert (links["good-one"]["created_at"], links["good-one"]["total_clicks"]) == (
        "2024-01-01T00:00:00+00:00",
        8,
    )


async def test_tracked_clicks_add_to_imported_ones_and_sorting_uses_the_sum(api) -> None:
    """The worker writes links.total_clicks as an absolute value (GREATEST): with the imported count
    in its own column, tracked clicks add to it instead of hiding behind it."""
    await _post_csv(api, (DATA / "bitly.csv").read_text())  # sprng24: 1204, guide-x: 0
    resp = await api.client.post(
        "/api/v1/links", json={"url": "https://native.example", "short_code": "native"}, headers=api.auth
    )
    assert resp.status == 201
    links = await _links_by_code(api)
    ids = {code: link["id"] for code, link in links.items()}
    await _track(api, {ids["sprng24"]: (3, 2), ids["native"]: (500, 400), ids["guide-x"]: (7, 7)})
    one = await (await api.client.get(f"/api/v1/links/{ids['sprng24']}", headers=api.auth)).json()
    assert (one["total_clicks"], one["tracked_clicks"], one["imported_clicks"]) == (1207, 3, 1204)
    # A replayed (older) flush never moves the tracked part back.
    await _track(api, {ids["sprng24"]: (1, 1)})
    assert (await _links_by_code(api))["sprng24"]["total_clicks"] == 1207

    resp = await api.client.get("/api/v1/links?sort=total_clicks&order=desc", headers=api.auth)
    ordered = [(link["short_code"], link["total_clicks"]) for link in (await resp.json())["data"]]
    assert ordered == [("sprng24", 1207), ("native", 500), ("guide-x", 7)]
    # Keyset pages over the same sum.
    seen, cursor = [], None
    while True:
        params = "sort=total_clicks&order=asc&limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = await (await api.client.get(f"/api/v1/links?{params}", headers=api.auth)).json()
        seen += [link["short_code"] for link in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == ["guide-x", "native", "sprng24"]


async def test_export_round_trips_dates_and_counts(api) -> None:
    await _post_csv(api, (DATA / "shlink.csv").read_text())
    links = await _links_by_code(api)
    await _track(api, {links["shl-one"]["id"]: (4, 4)})
    before = {
        code: (link["created_at"], link["total_clicks"]) for code, link in (await _links_by_code(api)).items()
    }
    assert before == {
        "shl-one": ("2024-01-05T09:30:00+00:00", 16),
        "shl-two": ("2024-01-06T09:30:00+00:00", 3),
    }
    exported = await (await api.client.get("/api/v1/links/export.csv", headers=api.auth)).text()
    rows = {r["short_code"]: r for r in csv.DictReader(io.StringIO(exported))}
    assert {c: (r["created_at"], r["total_clicks"], r["imported_clicks"]) for c, r in rows.items()} == {
        "shl-one": ("2024-01-05T09:30:00+00:00", "16", "12"),
        "shl-two": ("2024-01-06T09:30:00+00:00", "3", "3"),
    }
    for link in links.values():  # free the codes, then import the export back
        assert (await api.client.delete(f"/api/v1/links/{link['id']}", headers=api.auth)).status == 204
    report = await _post_csv(api, exported)
    assert (report["format"], report["imported"], report["failed"]) == ("plain", 2, 0)
    after = {
        code: (link["created_at"], link["total_clicks"]) for code, link in (await _links_by_code(api)).items()
    }
    assert after == before


async def test_backdated_imports_count_against_the_monthly_link_quota(api) -> None:
    text = "url,short_code,created_at,clicks\n" + "".join(
        f"https://old.example/{i},old-{i},2019-06-01 12:00:00,{i}\n" for i in range(50)
    )
    assert (await _post_csv(api, text))["imported"] == 50  # the free plan's 50 links per month
    assert all(link["created_at"].startswith("2019-06-01") for link in (await _links_by_code(api)).values())
    resp = await api.client.post("/api/v1/links", json={"url": "https://new.example"}, headers=api.auth)
    assert resp.status == 402 and (await resp.json())["error"]["field"] == "links_per_month"


async def test_analytics_report_tracked_clicks_and_start_at_the_import(
    make_settings, database_url, broker, redis_client
) -> None:
    """Analytics have no per-click history for imported counts: they report tracked clicks, with
    imported_clicks beside them, and their default window starts at the import, not at a source
    date older than the longest window allowed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # No worker on that port: ClickHouse is unavailable and the link report falls back to PostgreSQL.
    settings = make_settings(database_url=database_url, kafka_broker=broker.url, worker_port=port)
    async with serve_api(settings) as harness:
        text = "url,short_code,created_at,clicks\nhttps://old.example,ancient,2015-01-02T03:04:05Z,900\n"
        await _post_csv(harness, text)
        link = (await _links_by_code(harness))["ancient"]
        await _track(harness, {link["id"]: (2, 1)})
        resp = await harness.client.get(f"/api/v1/links/{link['id']}/analytics", headers=harness.auth)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert (body["total_clicks"], body["unique_clicks"], body["imported_clicks"]) == (2, 1, 900)
        assert body["source"] == "postgres"
        assert body["from"] == link["imported_at"]


async def test_cli_progress_bar_completes_when_rows_fail_at_the_database(api) -> None:
    from rich.console import Console

    from cli.importer import run_import

    parsed = importers.parse_csv((DATA / "kutt.csv").read_text())
    first = await run_import(api.settings, parsed, api.workspace_id, None, Console(file=io.StringIO()))
    assert first.imported == 2
    # Again: both short codes are now taken, which only the database can tell.
    out = io.StringIO()
    again = await run_import(api.settings, parsed, api.workspace_id, None, Console(file=out, width=100))
    assert (again.imported, again.failed) == (0, 2)
    assert "2/2" in out.getvalue(), out.getvalue()
