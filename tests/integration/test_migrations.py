"""PostgreSQL migrations, click partitions and the ClickHouse schema against real servers."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import clickhouse_connect
import pytest

from engine.clicks.models import EnrichedClick
from engine.config import REPO_ROOT
from engine.db.clickhouse_schema import apply_clickhouse_schema, drop_clickhouse_schema
from engine.db.migrate import (
    DirtyDatabase,
    Migration,
    MigrationError,
    Migrator,
    discover,
    ensure_database,
)
from engine.db.partitions import drop_old_click_partitions, ensure_click_partitions

pytestmark = pytest.mark.integration

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_DIR = REPO_ROOT / "migrations" / "postgres"
LATEST = discover(PG_DIR)[-1].version

SPEC_TABLES = {
    "users", "workspaces", "workspace_members", "domains", "links", "link_rules", "clicks",
    "qr_codes", "bio_page_themes", "bio_pages", "bio_page_links", "api_keys", "webhooks",
    "subscriptions", "audit_logs", "sessions", "password_resets", "tags", "link_tags",
    "outbox", "webhook_deliveries", "billing_events_processed", "workspace_invitations",
    "email_verifications", "schema_migrations",
}  # fmt: skip

SPEC_INDEXES = {
    "idx_users_email", "idx_users_created_at", "idx_workspaces_owner", "idx_workspaces_slug",
    "idx_workspace_members_user", "idx_workspace_members_workspace", "idx_links_user",
    "idx_links_workspace", "idx_links_short_code", "idx_links_domain", "idx_links_created_at",
    "idx_links_workspace_created", "idx_links_search", "idx_link_rules_link", "idx_link_rules_active",
    "idx_link_rules_conditions", "idx_domains_workspace", "idx_domains_domain", "idx_clicks_link_id",
    "idx_clicks_visitor", "idx_qr_codes_link", "idx_bio_pages_workspace", "idx_bio_pages_slug",
    "idx_bio_page_links_page", "idx_api_keys_user", "idx_api_keys_prefix", "idx_webhooks_workspace",
    "idx_subscriptions_workspace", "idx_subscriptions_stripe", "idx_audit_logs_workspace",
    "idx_audit_logs_user", "idx_audit_logs_resource", "idx_sessions_user", "idx_sessions_token",
    "idx_sessions_expires", "idx_password_resets_token", "idx_password_resets_user",
    "idx_tags_workspace", "idx_link_tags_tag", "uq_links_domain_short_code", "uq_clicks_event",
    "idx_outbox_unpublished",
}  # fmt: skip


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    name = f"lr_test_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{PG_SERVER}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _month_start(months_from_now: int) -> datetime:
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 + months_from_now
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _partition_name(months_from_now: int) -> str:
    return f"clicks_{_month_start(months_from_now):%Y_%m}"


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def _partitions(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'clicks'::regclass"
    )
    return {r["relname"] for r in rows}


def _schema_dump(dsn: str) -> str:
    out = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", dsn], check=True, capture_output=True, text=True
    ).stdout
    # Newer pg_dump versions emit \restrict lines with a random key on every run.
    return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


async def test_up_down_up_roundtrip(dsn: str) -> None:
    steps: list[tuple[str, int]] = []
    migrator = Migrator(dsn, on_step=lambda direction, m: steps.append((direction, m.version)))
    applied = await migrator.up()
    assert [m.version for m in applied] == list(range(1, LATEST + 1))
    assert steps == [("up", v) for v in range(1, LATEST + 1)]
    status = await migrator.status()
    assert (status.version, status.dirty, status.pending) == (LATEST, False, [])
    assert len(status.applied) == LATEST
    assert await migrator.up() == []

    conn = await asyncpg.connect(dsn)
    try:
        assert SPEC_TABLES <= await _tables(conn)
        indexes = {r["indexname"]: r["indexdef"] for r in await conn.fetch("SELECT * FROM pg_indexes")}
        assert SPEC_INDEXES <= indexes.keys(), SPEC_INDEXES - indexes.keys()
        assert "UNIQUE" in indexes["uq_links_domain_short_code"]
        assert "WHERE (deleted_at IS NULL)" in indexes["uq_links_domain_short_code"]
        assert "COALESCE(title" in indexes["idx_links_search"]
        assert {"clicks_default", *(_partition_name(i) for i in range(3))} <= await _partitions(conn)

        # Per-domain uniqueness of live short codes, NULL domain included.
        user = await conn.fetchval(
            "INSERT INTO users (email, password_hash, name) VALUES ('a@x.io', 'h', 'A') RETURNING id"
        )
        ws = await conn.fetchval(
            "INSERT INTO workspaces (name, slug, owner_id) VALUES ('W', 'w', $1) RETURNING id", user
        )
        dom = await conn.fetchval(
            "INSERT INTO domains (workspace_id, domain) VALUES ($1, 'go.x.io') RETURNING id", ws
        )
        insert_link = "INSERT INTO links (user_id, workspace_id, domain_id, url, short_code) VALUES ($1, $2, $3, 'https://e.x', 'abc') RETURNING id"
        first = await conn.fetchval(insert_link, user, ws, None)
        await conn.fetchval(insert_link, user, ws, dom)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.fetchval(insert_link, user, ws, None)
        await conn.execute("UPDATE links SET deleted_at = now() WHERE id = $1", first)
        await conn.fetchval(insert_link, user, ws, None)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE links SET redirect_type = 303")
        # The click sink is idempotent on (event_id, clicked_at).
        insert_click = (
            "INSERT INTO clicks (link_id, clicked_at, event_id) VALUES ($1, $2, 'e1') "
            "ON CONFLICT (event_id, clicked_at) DO NOTHING"
        )
        at = datetime.now(UTC)
        await conn.execute(insert_click, first, at)
        await conn.execute(insert_click, first, at)
        assert await conn.fetchval("SELECT count(*) FROM clicks") == 1
    finally:
        await conn.close()

    snapshot = _schema_dump(dsn)
    steps.clear()
    reverted = await migrator.down(None)
    assert [m.version for m in reverted] == list(range(LATEST, 0, -1))
    assert steps == [("down", v) for v in range(LATEST, 0, -1)]
    conn = await asyncpg.connect(dsn)
    try:
        assert await _tables(conn) == {"schema_migrations"}
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
        leftovers = await conn.fetch(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
            "UNION ALL SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' "
            "UNION ALL SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relname NOT LIKE 'schema_migrations%'"
        )
        assert leftovers == []
    finally:
        await conn.close()
    status = await migrator.status()
    assert (status.version, status.dirty, status.applied) == (None, False, [])

    await migrator.up()
    assert _schema_dump(dsn) == snapshot


async def test_up_and_down_by_steps(dsn: str) -> None:
    migrator = Migrator(dsn)
    assert [m.version for m in await migrator.up(2)] == [1, 2]
    assert (await migrator.status()).version == 2
    assert [m.version for m in await migrator.down()] == [2]
    assert [m.version for m in await migrator.down(5)] == [1]
    assert await migrator.down() == []
    with pytest.raises(MigrationError, match="steps"):
        await migrator.up(0)


def _migrations_with_broken_last(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    shutil.copytree(PG_DIR, directory)
    stem = f"{LATEST + 1:06d}_broken"
    (directory / f"{stem}.up.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n"
    )
    (directory / f"{stem}.down.sql").write_text("DROP TABLE IF EXISTS half_done;\n")
    return directory


async def test_failed_migration_leaves_dirty_until_forced(dsn: str, tmp_path: Path) -> None:
    directory = _migrations_with_broken_last(tmp_path)
    migrator = Migrator(dsn, directory)
    with pytest.raises(MigrationError, match=r"broken\.up\.sql failed.*force"):
        await migrator.up()
    status = await migrator.status()
    assert (status.version, status.dirty) == (LATEST + 1, True)
    assert len(status.applied) == LATEST and status.pending == []

    conn = await asyncpg.connect(dsn)
    try:
        # The failed file ran in one transaction: nothing of it remains.
        assert "half_done" not in await _tables(conn)
    finally:
        await conn.close()
    with pytest.raises(DirtyDatabase, match=f"force {LATEST}"):
        await migrator.up()
    with pytest.raises(DirtyDatabase):
        await migrator.down()
    with pytest.raises(MigrationError, match="no migration with version"):
        await migrator.force(LATEST + 50)

    await migrator.force(LATEST)
    status = await migrator.status()
    assert (status.version, status.dirty, [m.version for m in status.pending]) == (
        LATEST,
        False,
        [LATEST + 1],
    )
    (directory / f"{LATEST + 1:06d}_broken.up.sql").write_text("CREATE TABLE half_done (id int);\n")
    assert [m.version for m in await migrator.up()] == [LATEST + 1]
    await migrator.force(0)
    assert (await migrator.status()).version is None


async def test_concurrent_up_applies_each_migration_once(dsn: str) -> None:
    steps: list[int] = []

    def record(direction: str, migration: Migration) -> None:
        steps.append(migration.version)

    results = await asyncio.gather(Migrator(dsn, on_step=record).up(), Migrator(dsn, on_step=record).up())
    assert sorted(len(r) for r in results) == [0, LATEST]
    assert steps == list(range(1, LATEST + 1))
    assert (await Migrator(dsn).status()).version == LATEST


async def test_ensure_database() -> None:
    name = f"lr_test_{uuid.uuid4().hex}"
    target = f"{PG_SERVER}/{name}"
    try:
        assert await ensure_database(target) is True
        assert await ensure_database(target) is False
        conn = await asyncpg.connect(target)
        await conn.close()
    finally:
        admin = await asyncpg.connect(f"{PG_SERVER}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_click_partitions(dsn: str) -> None:
    await Migrator(dsn).up()
    conn = await asyncpg.connect(dsn)
    try:
        assert await ensure_click_partitions(conn) == []
        # A click beyond the existing partitions lands in clicks_default, and moves to its own
        # partition when that month is created.
        far = _month_start(5) + timedelta(days=3)
        await conn.execute(
            "INSERT INTO clicks (link_id, clicked_at, event_id) VALUES ($1, $2, 'far')", uuid.uuid4(), far
        )
        where = "SELECT tableoid::regclass::text FROM clicks WHERE event_id = 'far'"
        assert await conn.fetchval(where) == "clicks_default"
        assert await ensure_click_partitions(conn, 5) == [_partition_name(i) for i in (3, 4, 5)]
        assert await conn.fetchval(where) == _partition_name(5)
        assert await conn.fetchval("SELECT count(*) FROM clicks") == 1

        await conn.execute(
            "CREATE TABLE clicks_2020_01 PARTITION OF clicks "
            "FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-02-01 00:00+00')"
        )
        await conn.execute(
            "INSERT INTO clicks (link_id, clicked_at) VALUES ($1, '2020-01-15 00:00+00')", uuid.uuid4()
        )
        assert await drop_old_click_partitions(conn, 400) == ["clicks_2020_01"]
        assert await drop_old_click_partitions(conn, 400) == []
        # Retention 0 drops only months that have fully ended: none of the current ones.
        assert await drop_old_click_partitions(conn, 0) == []
        later = _month_start(2) + timedelta(hours=1)
        assert await drop_old_click_partitions(conn, 0, now=later) == [_partition_name(0), _partition_name(1)]
        remaining = await _partitions(conn)
        assert "clicks_default" in remaining and _partition_name(2) in remaining
        with pytest.raises(asyncpg.PostgresError, match="months_ahead"):
            await ensure_click_partitions(conn, -1)
    finally:
        await conn.close()


# --- ClickHouse -------------------------------------------------------------------------------


@pytest.fixture
def ch(tmp_path: Path) -> Any:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    yield client
    client.close()


CLICK_COLUMNS = ["clicked_at" if f.name == "ts" else f.name for f in dataclasses.fields(EnrichedClick)]


def _click(link_id: str, workspace_id: str, visitor: str, at: datetime, **overrides: Any) -> list[Any]:
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4().hex, "ts": at.timestamp(), "link_id": link_id,
        "workspace_id": workspace_id, "domain": "go.x.io", "short_code": "abc",
        "destination": "https://e.x", "rule_id": "", "variant": "", "kind": "redirect",
        "method": "GET", "ip": "203.0.113.9", "user_agent": "UA", "referer": "",
        "referer_domain": "news.x.io", "language": "en", "visitor_id": visitor,
        "is_unique": False, "is_bot": False, "is_preview": False, "country_code": "DE",
        "device_type": "mobile", "browser": "Firefox", "os": "Android",
    }  # fmt: skip
    fields.update(overrides)
    row = dataclasses.astuple(EnrichedClick(**fields))
    return [
        at if col == "clicked_at" else (int(v) if isinstance(v, bool) else v)
        for col, v in zip(CLICK_COLUMNS, row, strict=True)
    ]


def _day_start(days_from_now: int) -> datetime:
    # Relative dates: clicks_analytics has a 2-year TTL, fixed dates would expire one day.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days_from_now)


def _tables_ch(client: Any) -> set[str]:
    return {r[0] for r in client.query("SHOW TABLES").result_rows}


def test_clickhouse_apply_is_idempotent_and_drop_removes(ch: Any) -> None:
    versions = [m.version for m in discover(REPO_ROOT / "clickhouse")]
    assert apply_clickhouse_schema(ch) == versions
    assert apply_clickhouse_schema(ch) == []
    expected = {
        "clicks_analytics",
        "click_aggregates_daily",
        "clicks_to_daily_mv",
        "click_aggregates_daily_view",
        "click_counts_hourly",
        "clicks_to_counts_hourly_mv",
        "link_visitor_hours",
        "clicks_to_visitor_hours_mv",
        "link_variant_visitor_hours",
        "clicks_to_variant_visitor_hours_mv",
        "click_counts_daily",
        "clicks_to_counts_daily_mv",
    }
    assert expected | {"schema_migrations"} == _tables_ch(ch)
    # Every EnrichedClick field is a column (ts as clicked_at), plus the materialised date/hour
    # and 16-byte visitor id (000003).
    columns = {r[0] for r in ch.query("DESCRIBE TABLE clicks_analytics").result_rows}
    materialised = {"date", "hour", "visitor_bits", "visitor_other"}
    assert columns == set(CLICK_COLUMNS) | materialised | {"kafka_partition", "kafka_offset"}

    assert drop_clickhouse_schema(ch) == list(reversed(versions))
    assert _tables_ch(ch) == {"schema_migrations"}
    assert drop_clickhouse_schema(ch) == []
    assert apply_clickhouse_schema(ch) == versions


def test_clickhouse_dedup_token_makes_retries_idempotent(ch: Any) -> None:
    apply_clickhouse_schema(ch)
    link, ws = str(uuid.uuid4()), str(uuid.uuid4())
    at = _day_start(-2) + timedelta(hours=10, minutes=30)
    batch = [_click(link, ws, f"v{i}", at, rule_id="r", variant="a") for i in range(3)]
    for _ in range(2):  # the second insert is a retry of the same batch
        ch.insert(
            "clicks_analytics",
            batch,
            column_names=CLICK_COLUMNS,
            settings={"insert_deduplication_token": "batch-1"},
        )
    assert ch.query("SELECT count() FROM clicks_analytics").result_rows == [(3,)]
    daily = ch.query("SELECT total_clicks, unique_visitors FROM click_aggregates_daily_view").result_rows
    assert daily == [(3, 3)]
    # The page's rollups (000004) skip the retry too.
    counts = ch.query("SELECT sum(clicks) FROM click_counts_hourly WHERE dimension = '_flags'").result_rows
    assert counts == [(3,)]
    hours = ch.query("SELECT count(), sum(length(hours)) FROM link_visitor_hours FINAL").result_rows
    assert hours == [(3, 3)]
    # And those of 000005.
    daily = ch.query("SELECT sum(clicks) FROM click_counts_daily WHERE dimension = 'country'").result_rows
    assert daily == [(3,)]
    arms = ch.query("SELECT count(), sum(arraySum(hits.2)) FROM link_variant_visitor_hours FINAL").result_rows
    assert arms == [(3, 3)]
    ch.insert(
        "clicks_analytics",
        batch[:1],
        column_names=CLICK_COLUMNS,
        settings={"insert_deduplication_token": "batch-2"},
    )
    assert ch.query("SELECT count() FROM clicks_analytics").result_rows == [(4,)]


def test_clickhouse_daily_aggregate_is_exact_across_batches(ch: Any) -> None:
    apply_clickhouse_schema(ch)
    link, ws = str(uuid.uuid4()), str(uuid.uuid4())
    day = _day_start(-3)
    batches = [
        [
            _click(link, ws, "alice", day + timedelta(hours=9)),
            _click(link, ws, "bob", day + timedelta(hours=9)),
        ],
        [
            _click(link, ws, "alice", day + timedelta(hours=14), country_code="FR"),
            _click(link, ws, "crawler", day + timedelta(hours=14), is_bot=True),
            _click(link, ws, "slack", day + timedelta(hours=15), is_preview=True),
        ],
        [_click(link, ws, "alice", day + timedelta(days=1, hours=1))],
    ]
    for i, batch in enumerate(batches):
        ch.insert(
            "clicks_analytics",
            batch,
            column_names=CLICK_COLUMNS,
            settings={"insert_deduplication_token": f"b{i}"},
        )
    # Three inserts made at least three parts; the view merges states at read time.
    rows = ch.query(
        "SELECT date, total_clicks, unique_visitors, bot_clicks, preview_clicks, clicks_by_country, "
        "clicks_by_hour, clicks_by_device FROM click_aggregates_daily_view ORDER BY date"
    ).result_rows
    first, second = rows
    assert first[1:5] == (3, 2, 1, 1)  # alice counted once although she came in two batches
    assert first[5] == {"DE": 2, "FR": 1}
    assert first[6] == {9: 2, 14: 1}  # hours are counts, not a list of hours
    assert first[7] == {"mobile": 3}
    assert second[1:3] == (1, 1)
    ch.command("OPTIMIZE TABLE click_aggregates_daily FINAL")
    assert ch.query(
        "SELECT uniqExactMerge(unique_visitors) FROM click_aggregates_daily WHERE link_id = {l:UUID}",
        parameters={"l": link},
    ).result_rows == [(2,)]
