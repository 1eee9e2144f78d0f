"""A failed batch of the enrichment joiner stops the worker, as the agent's does (issue 30,
finding 8: the joiner task died on a publication error and nothing restarted it)."""

from __future__ import annotations

import asyncio

import pytest

from agents.stage import coordinator


async def test_a_failed_joiner_batch_stops_the_worker(make_stage, monkeypatch: pytest.MonkeyPatch) -> None:
    core = make_stage()
    stops: list[str] = []
    core.stop_worker = stops.append

    async def failing_process(events: object, ack: object = None) -> None:
        raise ConnectionError("broker gone")

    monkeypatch.setattr(coordinator, "JOIN_IDLE_S", 0.0)
    monkeypatch.setattr(core, "process", failing_process)
    core.joins.queue([], [])  # an answer waiting for its join
    joiner = asyncio.create_task(core._joiner())
    try:
        for _ in range(200):
            if stops:
                break
            await asyncio.sleep(0.005)
    finally:
        joiner.cancel()
        await asyncio.gather(joiner, return_exceptions=True)
    assert stops and "broker gone" in stops[0]
