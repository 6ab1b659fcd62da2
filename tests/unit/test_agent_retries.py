"""Agents retry a failed write until it succeeds instead of letting Faust acknowledge the event."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from streams.agents import common


async def test_until_written_retries_with_backoff_then_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []

    async def no_sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(common.asyncio, "sleep", no_sleep)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 7:
            raise ConnectionError("store down")
        return "written"

    before = REGISTRY.get_sample_value("linkrift_agent_write_retries_total", {"target": "t1"}) or 0.0
    assert await common.until_written("t1", flaky) == "written"
    assert calls == 8
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]  # doubling, capped at 5 s
    assert REGISTRY.get_sample_value("linkrift_agent_write_retries_total", {"target": "t1"}) == before + 7


async def test_until_written_lets_cancellation_through() -> None:
    async def hangs() -> Any:
        await asyncio.sleep(3600)

    task = asyncio.create_task(common.until_written("t2", hangs))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
