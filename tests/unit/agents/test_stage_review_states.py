"""Each review's enrichment state as the stage keeps it (issue 33, part 1), on dict tables.

What a review UI relies on: a review is PENDING with the heuristic's provisional label from
its first sight, PROCESSING while its call is queued, in flight or its retry scheduled (with
the attempt), and ends in one final state with the final label, model and prompt version.
A replay, a restart or a late answer never moves it back.
"""

from __future__ import annotations

from typing import Any

from agents.llm.heuristic import provisional_label
from agents.llm.labels import ReviewInput
from agents.llm.outcome import EnrichStatus
from streams.protocol import read_item, review_state_key
from tables.review_states import view

TRANSIENT = EnrichStatus.TRANSIENT_FAILURE
DAY_MS = 86_400_000


def stored(world: Any, event_id: str = "e1", *, restaurant: str = "rest-1") -> dict[str, Any] | None:
    return world.tables[0].review_states.get(review_state_key(restaurant, f"rv-{event_id}"))


def answer(world: Any, core: Any, event_id: str = "e1") -> dict[str, Any] | None:
    """What the API answers: the stored record with the owner's memory laid over it."""
    return view(stored(world, event_id), core.tracker.in_flight(event_id), now_ms=world.clock(),
                ttl_ms=7 * DAY_MS)


def states(record: dict[str, Any] | None) -> list[tuple[str, int]]:
    assert record is not None
    return [(step["state"], step["attempt"]) for step in record["history"]]


async def test_a_review_is_pending_with_its_provisional_label_processing_in_flight_then_enriched(
        world, feed, llm, make_stage) -> None:
    core = make_stage()
    review = feed.review("e1")
    await core.process([review])
    record = read_item(review.message.value).record["entity"]
    label, score, _ = provisional_label(
        ReviewInput("e1", record["text"], record["rating"], record["language"]))

    first = stored(world)
    assert first is not None
    assert (first["state"], first["label"], first["provisional"], first["score"]) == (
        "PENDING", str(label), True, score)
    assert (first["event_id"], first["trace_id"], first["review_id"]) == ("e1", "trace-e1", "rv-e1")
    await world.until(lambda: llm.was_asked("e1"), what="the LLM call")
    seen = answer(world, core)
    assert seen is not None
    assert (seen["state"], seen["attempt"], seen["label"], seen["provisional"], seen["final"]) == (
        "PROCESSING", 1, str(label), True, False)

    llm.respond("e1", label="NEGATIVE")
    await world.until_acked(review)
    final = answer(world, core)
    assert final is not None
    assert (final["state"], final["label"], final["provisional"], final["model"],
            final["prompt_version"], final["final"]) == (
        "ENRICHED", "NEGATIVE", False, "fake-llm", "test-v1", True)
    assert states(final) == [("PENDING", 1), ("ENRICHED", 1)]
    assert core.tracker.in_flight("e1") is None


async def test_a_retried_review_reads_processing_attempt_2_then_its_final_state(
        world, feed, llm, make_stage) -> None:
    core = make_stage(llm_max_attempts=3)
    review = feed.review("e1")
    await core.process([review])
    llm.respond("e1", attempt=1, status=TRANSIENT)
    await world.until_acked(review)  # its retry record is sent and joined

    scheduled = answer(world, core)
    assert scheduled is not None
    assert (scheduled["state"], scheduled["attempt"], scheduled["reason"]) == (
        "PROCESSING", 2, "LLM timed out")
    assert scheduled["provisional"] is True and scheduled["label"] is not None  # kept from PENDING

    retry = feed.event(world.retries()[-1].value)
    await core.process([retry])
    await world.until(lambda: llm.was_asked("e1", 2), what="the second call")
    assert answer(world, core)["state"] == "PROCESSING"  # type: ignore[index]
    llm.respond("e1", attempt=2)
    await world.until_acked(retry)
    assert states(answer(world, core)) == [("PENDING", 1), ("PROCESSING", 2), ("ENRICHED", 2)]


async def test_a_review_whose_llm_keeps_failing_ends_fallback_with_the_reason(
        world, feed, llm, make_stage) -> None:
    core = make_stage(llm_max_attempts=2)
    event = feed.review("e1")
    await core.process([event])
    for attempt in (1, 2):
        llm.respond("e1", attempt=attempt, status=TRANSIENT)
        await world.until_acked(event)
        if attempt < 2:
            event = feed.event(world.retries()[-1].value)
            await core.process([event])

    final = answer(world, core)
    assert final is not None
    assert (final["state"], final["attempt"], final["reason"], final["final"]) == (
        "FALLBACK", 2, "LLM timed out", True)
    assert states(final) == [("PENDING", 1), ("PROCESSING", 2), ("FALLBACK", 2)]
    assert [details["reason"] for _, details in world.dead_letters] == ["llm_exhausted"]


async def test_a_budget_refusal_is_budget_skipped(world, feed, llm, make_stage) -> None:
    core = make_stage()
    review = feed.review("e1")
    await core.process([review])
    llm.respond("e1", status=EnrichStatus.BUDGET_SKIPPED)
    await world.until_acked(review)
    assert answer(world, core)["state"] == "BUDGET_SKIPPED"  # type: ignore[index]


async def test_a_replay_after_a_restart_never_moves_a_final_review_back(world, feed, llm, make_stage) -> None:
    core = make_stage()
    review = feed.review("e1")
    await core.process([review])
    llm.respond("e1")
    await world.until_acked(review)
    before = stored(world)

    restarted = make_stage()  # a new worker on the same tables reads the same offset again
    await restarted.process([feed.again(review)])
    await restarted.published()
    assert stored(world) == before
    assert answer(world, restarted)["state"] == "ENRICHED"  # type: ignore[index]


async def test_a_review_owed_at_a_crash_is_processing_again_on_the_next_worker(
        world, feed, llm, make_stage) -> None:
    """Its PENDING survived in the table; the next owner replays it and calls the LLM again."""
    review = feed.review("e1")
    core = make_stage()
    await core.process([review])
    assert stored(world)["state"] == "PENDING"  # type: ignore[index]
    await world.until(lambda: llm.was_asked("e1"), what="the first call")
    core.abandon()  # a rebalance: its memory of the call is gone
    assert answer(world, core)["state"] == "PENDING"  # type: ignore[index]

    restarted = make_stage()
    await restarted.process([feed.again(review)])
    await world.until(lambda: llm.asked.count(("e1", 1)) == 2, what="the call made again")
    assert answer(world, restarted)["state"] == "PROCESSING"  # type: ignore[index]
    llm.respond("e1")
    await world.until(lambda: (stored(world) or {}).get("state") == "ENRICHED", what="ENRICHED")


async def test_a_review_the_stage_cannot_fold_is_dead_lettered(
        world, feed, llm, make_stage, monkeypatch) -> None:
    core = make_stage()

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug while folding")

    monkeypatch.setattr(core.folder, "_first_sight", broken)
    review = feed.review("e1")
    await core.process([review])
    await world.until_acked(review)
    record = answer(world, core)
    assert record is not None
    assert (record["state"], record["reason"], record["final"]) == ("DEAD_LETTERED", "processing_error", True)


async def test_orders_have_no_state_and_the_setting_turns_states_off(world, feed, llm, make_stage) -> None:
    core = make_stage(review_states=False)
    llm.always()
    review, order = feed.review("e1"), feed.order("o1")
    await core.process([review, order])
    await world.until_acked(review, order)
    assert dict(world.tables[0].review_states) == {}
