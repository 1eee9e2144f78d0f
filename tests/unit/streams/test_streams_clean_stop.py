"""After an unclean stop the table stores are wiped; after a clean one they are kept
(streams/clean_stop.py, issue 30 finding 3), and a failed restaurant-stage batch stops the
worker instead of being skipped (finding 1)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agents import restaurant
from streams import clean_stop


def a_store(tabledir: Path) -> Path:
    store = tabledir / "panes-0.db"
    store.mkdir(parents=True)
    (store / "CURRENT").write_text("MANIFEST-000001\n")
    return store


def test_a_clean_stop_keeps_the_stores(tmp_path: Path) -> None:
    tabledir = tmp_path / "v1" / "tables"
    assert not clean_stop.begin(tmp_path, tabledir)  # a first start: nothing to wipe
    store = a_store(tabledir)
    clean_stop.end(tmp_path)
    assert not clean_stop.begin(tmp_path, tabledir)
    assert store.exists()


def test_a_start_after_an_unclean_stop_wipes_the_stores(tmp_path: Path) -> None:
    tabledir = tmp_path / "v1" / "tables"
    clean_stop.begin(tmp_path, tabledir)
    store = a_store(tabledir)
    # kill -9: end() never ran
    assert clean_stop.begin(tmp_path, tabledir)
    assert not store.exists()
    assert (tmp_path / clean_stop.MARKER).exists()  # marked again while this worker runs


class Stopped(Exception):
    """Stands for the process exit of stop_now."""


async def test_a_failed_stage_batch_stops_the_worker_and_is_never_skipped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stops: list[str] = []
    processed: list[Any] = []

    class FailingCore:
        async def process(self, events: Any, ack: Any) -> None:
            processed.append(list(events))
            raise OSError("No space left on device")

    def stop_now(reason: str) -> None:
        stops.append(reason)
        raise Stopped(reason)

    async def ready() -> None:
        return None

    runtime = restaurant.runtime
    monkeypatch.setattr(runtime, "ready", ready)
    monkeypatch.setattr(runtime, "core", FailingCore(), raising=False)
    monkeypatch.setattr(runtime, "llm", type("LLM", (), {"client": type("C", (), {
        "base_url": "http://llm", "model": "m"})()})(), raising=False)
    monkeypatch.setattr(restaurant, "stop_now", stop_now)
    progressed: list[Any] = []
    monkeypatch.setattr(restaurant, "record_progress", progressed.extend)
    async with restaurant.restaurant_stage.test_context() as agent:
        await agent.put(b"a by-restaurant record")
        deadline = asyncio.get_running_loop().time() + 5
        while not stops and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
    assert processed, "the batch never reached the stage"
    assert stops and "No space left on device" in stops[0], stops
    assert progressed == []  # the failed batch never counts as handled
