"""The api's start: a start that fails half-way closes what it had already opened."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from api import redirect
from api.app import create_app
from api.state import ANALYTICS, EMITTER, PG

pytestmark = pytest.mark.integration


async def _connections(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return n
    finally:
        await conn.close()


async def test_a_start_failing_at_the_click_journal_closes_what_it_opened(
    make_settings: Any, database_url: str, broker: Any, tmp_path: Path
) -> None:
    # The data dir is a file, so the click journal (opened after the PostgreSQL pool, Redis, the
    # GeoIP reader and the analytics client) cannot be created.
    data_dir = tmp_path / "not-a-dir"
    data_dir.write_text("")
    app = create_app(make_settings(database_url=database_url, kafka_broker=broker.url, data_dir=data_dir))
    runner = web.AppRunner(app)
    with pytest.raises(OSError):
        await runner.setup()
    await runner.cleanup()

    assert EMITTER not in app  # it failed before the emitter
    assert app[PG].is_closing()
    assert await _connections(database_url) == 0
    assert app[ANALYTICS].session.closed
    assert not app[redirect.GEO].available


async def test_a_started_api_holds_its_pool_until_it_stops(
    make_settings: Any, database_url: str, broker: Any
) -> None:
    app = create_app(make_settings(database_url=database_url, kafka_broker=broker.url))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert await _connections(database_url) >= 1
        assert not app[ANALYTICS].session.closed
    finally:
        await runner.cleanup()
    assert await _connections(database_url) == 0
    assert app[ANALYTICS].session.closed


async def test_a_stop_is_not_held_up_by_a_connection_that_is_never_released(
    make_settings: Any, database_url: str, broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asyncpg's pool.close() waits for every acquired connection; a handler that never gives one
    # back (a stream torn down mid-query) used to hang the api's stop for good.
    import api.app as api_app

    monkeypatch.setattr(api_app, "STOP_GRACE_SECONDS", 0.5)
    app = create_app(make_settings(database_url=database_url, kafka_broker=broker.url))
    runner = web.AppRunner(app)
    await runner.setup()
    await app[PG].acquire()  # and never released
    async with asyncio.timeout(60):  # a hang guard: the stop used to wait forever here
        await runner.cleanup()  # the pool is terminated after the grace period

    assert app[PG].is_closing()
    assert await _connections(database_url) == 0
