"""Migration file discovery, creation and statement splitting (no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import REPO_ROOT
from engine.db.clickhouse_schema import split_statements
from engine.db.migrate import Migration, MigrationError, create, discover


def _touch(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_text("SELECT 1;\n")


def test_discover_sorts_pairs(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "000002_b.up.sql",
        "000002_b.down.sql",
        "000001_a.up.sql",
        "000001_a.down.sql",
        "README.md",
    )
    migrations = discover(tmp_path)
    assert [(m.version, m.name) for m in migrations] == [(1, "a"), (2, "b")]
    assert migrations[0] == Migration(1, "a", tmp_path / "000001_a.up.sql", tmp_path / "000001_a.down.sql")
    assert str(migrations[1]) == "000002_b"


def test_discover_empty_and_missing_directory(tmp_path: Path) -> None:
    assert discover(tmp_path) == []
    with pytest.raises(MigrationError, match="does not exist"):
        discover(tmp_path / "nope")


@pytest.mark.parametrize("missing", ["up", "down"])
def test_discover_missing_pair(tmp_path: Path, missing: str) -> None:
    other = "down" if missing == "up" else "up"
    _touch(tmp_path, f"000001_a.{other}.sql")
    with pytest.raises(MigrationError, match=rf"000001_a has no \.{missing}\.sql"):
        discover(tmp_path)


def test_discover_duplicate_version(tmp_path: Path) -> None:
    _touch(tmp_path, "000001_a.up.sql", "000001_a.down.sql", "000001_b.up.sql", "000001_b.down.sql")
    with pytest.raises(MigrationError, match="duplicate migration version 000001"):
        discover(tmp_path)


@pytest.mark.parametrize(
    "name",
    [
        "1_a.up.sql",
        "0000001_a.up.sql",
        "000000_a.up.sql",
        "000001_Bad.up.sql",
        "000001_a-b.up.sql",
        "000001_a.sql",
        "add_table.up.sql",
        "000001_a.sideways.sql",
    ],
)
def test_discover_bad_names(tmp_path: Path, name: str) -> None:
    _touch(tmp_path, name)
    with pytest.raises(MigrationError, match=name.replace(".", r"\.")):
        discover(tmp_path)


def test_create_numbers_after_highest(tmp_path: Path) -> None:
    up, down = create(tmp_path / "new", "first_table")
    assert (up.name, down.name) == ("000001_first_table.up.sql", "000001_first_table.down.sql")
    _touch(tmp_path / "new", "000007_x.up.sql", "000007_x.down.sql")
    up, down = create(tmp_path / "new", "add_2fa")
    assert up.name == "000008_add_2fa.up.sql" and down.exists()
    assert [m.version for m in discover(tmp_path / "new")] == [1, 7, 8]


@pytest.mark.parametrize("name", ["", "Add", "add-tags", "add tags", "../x", "tags.up"])
def test_create_rejects_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(MigrationError, match=r"\[a-z0-9_\]\+"):
        create(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_repository_migrations_are_valid() -> None:
    pg = discover(REPO_ROOT / "migrations" / "postgres")
    assert [m.version for m in pg] == list(range(1, len(pg) + 1))
    for migration in pg:
        text = migration.up_path.read_text() + migration.down_path.read_text()
        assert "BEGIN;" not in text.upper() and "COMMIT;" not in text.upper()
    ch = discover(REPO_ROOT / "clickhouse")
    assert [m.version for m in ch] == list(range(1, len(ch) + 1))


def test_split_statements() -> None:
    sql = """-- leading comment
CREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = Memory;

-- about b; with a semicolon in the comment
CREATE VIEW IF NOT EXISTS b AS
SELECT x
FROM a;
-- trailing comment only
"""
    assert split_statements(sql) == [
        "-- leading comment\nCREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = Memory",
        "-- about b; with a semicolon in the comment\nCREATE VIEW IF NOT EXISTS b AS\nSELECT x\nFROM a",
    ]
