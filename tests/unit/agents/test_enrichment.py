"""The enrichment workers: a call is never held back by the previous call's emitting.

``complete`` waits for its outputs' acknowledgements; a worker calls the LLM for its next
batch meanwhile, but keeps at most one completion running, in order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from agents.llm.outcome import EnrichOutcome, EnrichStatus
from agents.stage.enricher import Enricher

WAIT_S = 5.0


@dataclass
class FakeJob:
    name: str
    partition: int = 0
    failures: int = 0
    size_bytes: int = 0


def outcome(job: FakeJob) -> EnrichOutcome:
    return EnrichOutcome(ref=job.name, restaurant_id="rest-1", status=EnrichStatus.FALLBACK,
                         enrichment=None, model="sim", prompt_version="v1")


class Recorder:
    """An LLM that answers at once and a ``complete`` that waits until released."""

    def __init__(self, *, complete_fails_first: bool = False, enrich_fails_first: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.completed: list[list[str]] = []
        self.release = asyncio.Event()
        self.changed = asyncio.Condition()
        self.complete_fails_first = complete_fails_first
        self.enrich_fails_first = enrich_fails_first

    async def enrich(self, jobs: list[FakeJob]) -> list[EnrichOutcome]:
        async with self.changed:
            self.calls.append([j.name for j in jobs])
            self.changed.notify_all()
        if self.enrich_fails_first:
            self.enrich_fails_first = False
            raise RuntimeError("a table read failed")
        return [outcome(j) for j in jobs]

    async def complete(self, jobs: list[FakeJob], outcomes: list[EnrichOutcome]) -> None:
        await self.release.wait()
        if self.complete_fails_first:
            self.complete_fails_first = False
            raise ConnectionError("broker unreachable")
        async with self.changed:
            self.completed.append([j.name for j in jobs])
            self.changed.notify_all()

    def give_up(self, jobs: list[FakeJob], error: BaseException) -> list[EnrichOutcome]:
        return [outcome(j) for j in jobs]

    async def until(self, predicate: Any) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), WAIT_S)


def enricher(recorder: Recorder) -> Enricher:
    return Enricher(enrich=recorder.enrich, complete=recorder.complete, give_up=recorder.give_up,
                    batch_size=2, concurrency=1, max_pending=100, max_attempts=3)


async def test_next_call_starts_while_the_previous_outcomes_are_still_being_emitted() -> None:
    recorder = Recorder()
    workers = enricher(recorder)
    workers.start()
    try:
        assert workers.submit([FakeJob(n) for n in "abcdef"]) == []
        await recorder.until(lambda: len(recorder.calls) == 2)
        # One worker: [a, b] is being completed (its acks not back) while [c, d] was called.
        for _ in range(50):  # the loop runs its ready tasks: an unbounded worker calls again
            await asyncio.sleep(0)
        assert recorder.calls == [["a", "b"], ["c", "d"]] and recorder.completed == []
        assert {j.name for j in workers.in_flight_jobs()} == set("abcd")
        assert workers.pending == 6  # queued or in flight, until completed

        recorder.release.set()
        await recorder.until(lambda: len(recorder.completed) == 3)
        assert recorder.completed == [["a", "b"], ["c", "d"], ["e", "f"]]  # in order
        assert workers.pending == 0 and workers.in_flight_jobs() == []
    finally:
        await workers.stop()


@pytest.mark.parametrize(("failing", "calls"), [("enrich", 2), ("complete", 1)])
async def test_a_failed_call_or_completion_is_tried_again_and_a_completion_without_a_new_call(
        monkeypatch, failing: str, calls: int) -> None:
    monkeypatch.setattr("agents.stage.enricher.RETRY_AFTER_FAILURE_S", 0.01)
    recorder = Recorder(complete_fails_first=failing == "complete", enrich_fails_first=failing == "enrich")
    workers = enricher(recorder)
    workers.start()
    try:
        jobs = [FakeJob("a"), FakeJob("b")]
        workers.submit(jobs)
        recorder.release.set()
        await recorder.until(lambda: recorder.completed == [["a", "b"]])
        assert recorder.calls == [["a", "b"]] * calls  # the answers a failed emission had are kept
        assert [j.failures for j in jobs] == [1, 1]
        assert workers.pending == 0
    finally:
        await workers.stop()


async def test_stop_cancels_a_completion_under_way() -> None:
    recorder = Recorder()
    workers = enricher(recorder)
    workers.start()
    workers.submit([FakeJob("a")])
    await recorder.until(lambda: len(recorder.calls) == 1)
    await workers.stop()  # complete waits forever: stop must not
    assert recorder.completed == [] and workers.in_flight_jobs() == []
