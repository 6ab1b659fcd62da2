"""PostgreSQL schema migrations, compatible with golang-migrate's files and bookkeeping.

Files are `NNNNNN_name.up.sql` / `NNNNNN_name.down.sql`; the applied state is the single row of
`schema_migrations(version, dirty)`. A session advisory lock serialises concurrent runs, each file
runs in its own transaction, and a failed file leaves the version dirty until `force`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from engine.config import REPO_ROOT

DEFAULT_DIRECTORY = REPO_ROOT / "migrations" / "postgres"

# Fixed key for pg_advisory_lock: crc32("linkrift.migrate"); any constant works as long as
# every migrator uses the same one.
ADVISORY_LOCK_KEY = 0x4C524D47

_FILE_RE = re.compile(r"^(?P<version>\d+)_(?P<name>[^.]*)\.(?P<direction>up|down)\.sql$")
_NAME_RE = re.compile(r"^[a-z0-9_]+$")
_VERSION_DIGITS = 6
# golang-migrate files sometimes wrap themselves in a transaction; the migrator already does.
_TX_CONTROL_RE = re.compile(r"^\s*(BEGIN|COMMIT)\s*;\s*$", re.IGNORECASE | re.MULTILINE)

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT NOT NULL PRIMARY KEY,
    dirty BOOLEAN NOT NULL
)
"""


class MigrationError(Exception):
    """Migration files or the database's migration state are not usable."""


class DirtyDatabase(MigrationError):
    """A previous migration failed half-way; a human must check and `force` a version."""

    def __init__(self, version: int) -> None:
        super().__init__(
            f"database is dirty at version {version}: a migration failed part-way. Check the schema, "
            f"fix it by hand if needed, then run `linkrift migrate force V` with the version that "
            f"is actually applied (e.g. `linkrift migrate force {version - 1}` if {version} was "
            f"not applied)."
        )
        self.version = version


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up_path: Path
    down_path: Path

    def __str__(self) -> str:
        return f"{self.version:0{_VERSION_DIGITS}d}_{self.name}"


@dataclass
class MigrationStatus:
    version: int | None
    dirty: bool
    applied: list[Migration]
    pending: list[Migration]


StepCallback = Callable[[str, Migration], None]


def discover(directory: Path) -> list[Migration]:
    """The migrations in `directory`, sorted by version; raise MigrationError on any bad file."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    found: dict[int, dict[str, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(directory.iterdir()):
        if not path.name.endswith(".sql"):
            continue
        match = _FILE_RE.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path.name}: migration files must be named NNNNNN_name.up.sql or NNNNNN_name.down.sql"
            )
        raw_version, name, direction = match["version"], match["name"], match["direction"]
        if len(raw_version) != _VERSION_DIGITS or int(raw_version) == 0:
            raise MigrationError(f"{path.name}: version must be {_VERSION_DIGITS} digits and above 0")
        if not _NAME_RE.match(name):
            raise MigrationError(f"{path.name}: name must match [a-z0-9_]+")
        version = int(raw_version)
        if version in names and names[version] != name:
            raise MigrationError(
                f"duplicate migration version {raw_version}: {names[version]!r} and {name!r}"
            )
        names[version] = name
        found.setdefault(version, {})[direction] = path
    migrations = []
    for version in sorted(found):
        pair = found[version]
        for direction in ("up", "down"):
            if direction not in pair:
                raise MigrationError(
                    f"migration {version:0{_VERSION_DIGITS}d}_{names[version]} has no .{direction}.sql file"
                )
        migrations.append(Migration(version, names[version], pair["up"], pair["down"]))
    return migrations


def create(directory: Path, name: str) -> tuple[Path, Path]:
    """Create an empty up/down pair numbered after the highest existing migration."""
    if not _NAME_RE.match(name):
        raise MigrationError(f"migration name {name!r} must match [a-z0-9_]+")
    directory.mkdir(parents=True, exist_ok=True)
    existing = discover(directory)
    version = existing[-1].version + 1 if existing else 1
    stem = f"{version:0{_VERSION_DIGITS}d}_{name}"
    up, down = directory / f"{stem}.up.sql", directory / f"{stem}.down.sql"
    up.write_text(f"-- {stem}: schema change. Runs in one transaction; no BEGIN/COMMIT.\n")
    down.write_text(f"-- {stem}: undo exactly what the .up.sql file does.\n")
    return up, down


def _sql(path: Path) -> str:
    return _TX_CONTROL_RE.sub("", path.read_text())


async def ensure_database(dsn: str, connect_timeout: float = 5.0) -> bool:
    """Create the database named in `dsn` if it does not exist; return True if it was created."""
    parts = urlsplit(dsn)
    dbname = parts.path.lstrip("/")
    if not dbname:
        raise MigrationError("the database URL names no database")
    if dbname == "postgres":
        return False
    admin_dsn = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_dsn, timeout=connect_timeout)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname):
            return False
        quoted = '"' + dbname.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()


class Migrator:
    """Applies and reverts the migrations in `directory` against the database at `dsn`.

    `on_step(direction, migration)` is called after each migration file succeeds.
    """

    def __init__(
        self,
        dsn: str,
        directory: Path = DEFAULT_DIRECTORY,
        *,
        on_step: StepCallback | None = None,
    ) -> None:
        self.dsn = dsn
        self.directory = directory
        self.on_step = on_step

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
        try:
            # Held for the whole run: a second migrator waits here, then finds nothing pending.
            await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
            await conn.execute(_CREATE_TABLE)
        except BaseException:
            await conn.close()
            raise
        return conn

    @staticmethod
    async def _close(conn: asyncpg.Connection) -> None:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
        finally:
            await conn.close()

    @staticmethod
    async def _read_version(conn: asyncpg.Connection) -> tuple[int | None, bool]:
        row = await conn.fetchrow("SELECT version, dirty FROM schema_migrations LIMIT 1")
        if row is None:
            return None, False
        return int(row["version"]), bool(row["dirty"])

    @staticmethod
    async def _write_version(conn: asyncpg.Connection, version: int | None, dirty: bool) -> None:
        async with conn.transaction():
            await conn.execute("DELETE FROM schema_migrations")
            if version is not None:
                await conn.execute(
                    "INSERT INTO schema_migrations (version, dirty) VALUES ($1, $2)", version, dirty
                )

    async def _checked_state(self, conn: asyncpg.Connection) -> tuple[list[Migration], int | None]:
        migrations = discover(self.directory)
        version, dirty = await self._read_version(conn)
        if dirty and version is not None:
            raise DirtyDatabase(version)
        if version is not None and version not in {m.version for m in migrations}:
            raise MigrationError(
                f"database is at version {version}, which has no migration file in {self.directory}"
            )
        return migrations, version

    async def status(self) -> MigrationStatus:
        conn = await self._connect()
        try:
            migrations = discover(self.directory)
            version, dirty = await self._read_version(conn)
        finally:
            await self._close(conn)
        current = version or 0
        if dirty:
            # The dirty version itself is neither cleanly applied nor pending.
            applied = [m for m in migrations if m.version < current]
            pending = [m for m in migrations if m.version > current]
        else:
            applied = [m for m in migrations if m.version <= current]
            pending = [m for m in migrations if m.version > current]
        return MigrationStatus(version=version, dirty=dirty, applied=applied, pending=pending)

    async def _step(
        self, conn: asyncpg.Connection, migration: Migration, direction: str, after: int | None
    ) -> None:
        """Run one file in its own transaction, bracketed by dirty/clean version writes."""
        path = migration.up_path if direction == "up" else migration.down_path
        sql = _sql(path)
        await self._write_version(conn, migration.version, True)
        try:
            async with conn.transaction():
                await conn.execute(sql)
        except asyncpg.PostgresError as exc:
            raise MigrationError(
                f"{path.name} failed: {exc}. The database is marked dirty at version "
                f"{migration.version}; fix the problem, then run `linkrift migrate force V`."
            ) from exc
        await self._write_version(conn, after, False)
        if self.on_step is not None:
            self.on_step(direction, migration)

    async def up(self, steps: int | None = None) -> list[Migration]:
        """Apply pending migrations (all, or the next `steps`); return those applied."""
        if steps is not None and steps < 1:
            raise MigrationError("steps must be >= 1")
        conn = await self._connect()
        try:
            migrations, version = await self._checked_state(conn)
            pending = [m for m in migrations if m.version > (version or 0)]
            if steps is not None:
                pending = pending[:steps]
            for migration in pending:
                await self._step(conn, migration, "up", migration.version)
            return pending
        finally:
            await self._close(conn)

    async def down(self, steps: int | None = 1) -> list[Migration]:
        """Revert the last `steps` applied migrations (None: all of them); return those reverted."""
        if steps is not None and steps < 1:
            raise MigrationError("steps must be >= 1")
        conn = await self._connect()
        try:
            migrations, version = await self._checked_state(conn)
            applied = [m for m in migrations if m.version <= (version or 0)]
            to_revert = list(reversed(applied))
            if steps is not None:
                to_revert = to_revert[:steps]
            for migration in to_revert:
                earlier = [m.version for m in migrations if m.version < migration.version]
                await self._step(conn, migration, "down", earlier[-1] if earlier else None)
            return to_revert
        finally:
            await self._close(conn)

    async def force(self, version: int) -> None:
        """Record `version` as applied and clean without running anything; 0 or -1 means none."""
        if version < -1:
            raise MigrationError(f"invalid version {version}")
        conn = await self._connect()
        try:
            if version > 0 and version not in {m.version for m in discover(self.directory)}:
                raise MigrationError(f"no migration with version {version} in {self.directory}")
            await self._write_version(conn, version if version > 0 else None, False)
        finally:
            await self._close(conn)
