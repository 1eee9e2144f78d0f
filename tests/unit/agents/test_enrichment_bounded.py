"""The enricher's tries are bounded (issue 30, finding 7): what keeps failing gets the heuristic
and a dead letter, and its offset is released; a broker that does not answer is waited out.

Through the stage core on the fakes of ``conftest``: ``llm_max_attempts`` (3) caps the tries
of one review in one worker, a call that raised and an emission that failed alike, and an
emission that failed is tried again with the answer it had, without a new LLM call.
"""

from __future__ import annotations

from typing import Any

import pytest

from agents.llm.heuristic import HEURISTIC_MODEL
from schema_registry.errors import RecordEncodeError
from streams.errors import ReviewPulseError


class BrokerNotAnswering(ReviewPulseError):
    retriable = True


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # the pause, not a wait for luck
    monkeypatch.setattr("agents.stage.enricher.RETRY_AFTER_FAILURE_S", 0.001)


def assert_fallback_and_dead_letter(world, t, *, attempts: int, error: str) -> None:
    [(_, details)] = world.dead_letters
    assert (details["stage"], details["reason"], details["attempts"]) == ("enrich", "llm_exhausted", attempts)
    assert error in str(details["error"])
    [enriched] = world.enriched("e1")
    assert (enriched["status"], enriched["model"]) == ("FALLBACK", HEURISTIC_MODEL)
    pane = world.pane(t.w0)
    assert (pane.reviews, pane.fallbacks, pane.provisional_labels) == (1, 1, 0)


async def test_a_call_that_keeps_raising_is_tried_llm_max_attempts_times_then_falls_back_and_is_dead_lettered(
        world, feed, make_stage, t) -> None:
    core = make_stage(llm_max_attempts=3)
    calls: list[list[str]] = []

    async def broken(jobs: Any, spent: dict[str, int]) -> Any:
        calls.append([job.item.event_id for job in jobs])
        world.changed()
        raise KeyError("a table read failed after the LLM answered")

    core._enrich_fn = broken
    review = feed.review("e1")
    await core.process([review])
    await world.until_acked(review)

    assert calls == [["e1"]] * 3, "one try per attempt, then no more paid calls"
    assert_fallback_and_dead_letter(world, t, attempts=3, error="KeyError")
    assert world.retries() == [] and core.enricher.pending == 0


async def test_fallback_now_gives_up_on_the_first_failed_call(world, feed, make_stage, t) -> None:
    core = make_stage(llm_failure_policy="fallback_now")
    calls: list[str] = []

    async def broken(jobs: Any, spent: dict[str, int]) -> Any:
        calls.append("called")
        raise RuntimeError("enrich_batch bug")

    core._enrich_fn = broken
    review = feed.review("e1")
    await core.process([review])
    await world.until_acked(review)

    assert calls == ["called"]
    assert_fallback_and_dead_letter(world, t, attempts=1, error="RuntimeError")


async def test_an_answer_whose_output_will_not_encode_is_not_asked_again_and_falls_back(
        world, feed, llm, make_stage, t, monkeypatch: pytest.MonkeyPatch) -> None:
    core = make_stage(llm_max_attempts=3)
    encodes: list[str] = []
    encode = world.encode

    def picky(record_name: str, record: dict[str, Any]) -> bytes:
        if record_name == "ReviewEnriched" and record["status"] == "ENRICHED":
            encodes.append(record["event_id"])
            raise RecordEncodeError("score out of the schema's range")
        return encode(record_name, record)

    monkeypatch.setattr(core.ports, "encode", picky)
    llm.always(label="NEGATIVE")
    review = feed.review("e1")
    await core.process([review])
    await world.until_acked(review)

    assert llm.asked == [("e1", 1)], "the answer was paid for once"
    assert encodes == ["e1"] * 3
    assert_fallback_and_dead_letter(world, t, attempts=3, error="RecordEncodeError")


async def test_a_broker_not_answering_is_waited_out_without_a_new_call_or_a_dead_letter(
        world, feed, llm, make_stage, t, monkeypatch: pytest.MonkeyPatch) -> None:
    core = make_stage(llm_max_attempts=2)
    refusals: list[str] = []
    send = world.send

    async def flaky(topic: str, **details: Any) -> Any:
        if topic == world.topics.enriched and len(refusals) < 5:  # more refusals than attempts
            refusals.append(topic)
            world.changed()
            raise BrokerNotAnswering("no answer from the leader")
        return await send(topic, **details)

    monkeypatch.setattr(core.ports, "send", flaky)
    llm.always(label="NEGATIVE")
    review = feed.review("e1")
    await core.process([review])
    await world.until_acked(review)

    assert len(refusals) == 5 and llm.asked == [("e1", 1)]
    assert world.dead_letters == []
    [enriched] = world.enriched("e1")
    assert (enriched["status"], enriched["sentiment"]) == ("ENRICHED", "NEGATIVE")
