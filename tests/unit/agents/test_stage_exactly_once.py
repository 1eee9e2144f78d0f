"""The restaurant stage under exactly-once (docs/exactly-once.md), on dict tables and fakes.

What the transactions rely on: every record the stage sends names the partition whose
transaction it belongs to; an answer's records are sent by the batch that joins it (so the
record, the join and the review's offset commit together), never when the LLM answers;
each batch commits its partitions' transactions after its events are acked, one batch after
the other; and a batch that fails commits nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from conftest import llm_outcome

from agents.llm.outcome import EnrichStatus
from agents.stage import Job
from streams.protocol import read_item, write_item

EXACTLY_ONCE = {"processing_guarantee": "exactly_once"}


def commits(world: Any) -> list[str]:
    return [h for h in world.history if h.startswith("commit")]


async def test_an_answer_is_sent_by_the_batch_that_joins_it_inside_its_partitions_transaction(
        world, feed, llm, make_stage) -> None:
    core = make_stage(**EXACTLY_ONCE)
    review = feed.review("e1", partition=2)
    await core.process([review])
    await world.until(lambda: llm.was_asked("e1"), what="the LLM call")
    await core.published()
    # Its state (the pane, PENDING) commits; its offset does not move while it is owed.
    assert commits(world) == ["commit [2]"] and not world.is_acked(review)

    llm.respond("e1", label="CRITICAL")
    await world.until_acked(review)
    enriched = world.on(world.topics.enriched)
    critical = world.on(world.topics.critical_alert)
    assert len(enriched) == len(critical) == 1
    assert enriched[0].stage_partition == critical[0].stage_partition == 2
    at = world.history.index(f"ack {review.message.offset}")
    assert world.history[at + 1:][:1] == ["commit [2]"]  # acked, then its transaction commits


async def test_nothing_of_an_answer_is_sent_before_a_batch_joins_it(world, feed, llm, make_stage) -> None:
    core = make_stage(**EXACTLY_ONCE)
    core.joins.waiting = asyncio.Event()  # the idle joiner never wakes: no batch comes
    core._joiner_task.cancel()  # type: ignore[union-attr]
    review = feed.review("e1")
    await core.process([review])
    llm.respond("e1")
    await asyncio.wait_for(core.joins.waiting.wait(), 5)  # the answer waits for its join
    assert world.on(world.topics.enriched) == []

    await core.process([feed.order("o1")])  # the next batch joins it and sends its record
    await world.until_acked(review)
    [sent] = world.on(world.topics.enriched)
    assert sent.json()["event_id"] == "e1" and sent.stage_partition == 0


async def test_a_retry_record_is_sent_by_the_joining_batch_outside_the_transaction(
        world, feed, llm, make_stage) -> None:
    """Sent with the batch that records PROCESSING attempt 2 and acks the review, but not in
    its transaction: reviews.retry must hold no commit markers (see Outputs.retry)."""
    core = make_stage(**EXACTLY_ONCE, llm_max_attempts=2)
    core.joins.waiting = asyncio.Event()  # no idle joiner: the next batch joins
    core._joiner_task.cancel()  # type: ignore[union-attr]
    review = feed.review("e1", partition=1)
    await core.process([review])
    llm.respond("e1", status=EnrichStatus.TRANSIENT_FAILURE)
    await asyncio.wait_for(core.joins.waiting.wait(), 5)
    assert world.retries() == []  # kept for the joining batch
    await core.process([feed.order("o1", partition=1)])
    await world.until_acked(review)
    [retry] = world.retries()
    assert retry.stage_partition is None
    assert commits(world)[-1] == "commit [1]"


async def test_every_send_of_a_batch_names_its_partition(world, feed, llm, make_stage, t) -> None:
    core = make_stage(**EXACTLY_ONCE)
    llm.always()
    review = feed.review("e1", partition=3)
    await core.process([review])
    await world.until_acked(review)
    await core.process([feed.tick(t.closing(t.w0), partition=3)])
    await core.published()
    assert world.aggregates("TUMBLING")
    assert {s.stage_partition for s in world.sent} == {3}


async def test_batches_run_one_after_the_other_and_a_failed_one_commits_nothing(
        world, feed, llm, make_stage) -> None:
    core = make_stage(**EXACTLY_ONCE)
    world.flush_gate = asyncio.Event()  # the first batch's publication waits on the broker
    await core.process([feed.order("o1")])
    second = asyncio.ensure_future(core.process([feed.order("o2")]))
    await asyncio.sleep(0.05)
    assert not second.done()  # waits for the first batch's transaction
    world.flush_gate.set()
    await asyncio.wait_for(second, 5)
    await core.published()
    assert commits(world) == ["commit [0]", "commit [0]"]

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a send refused")

    core.outputs.finals = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await core.process([feed.order("o3")])
    await core.published()
    assert commits(world) == ["commit [0]", "commit [0]"]


async def test_at_least_once_commits_no_transaction(world, feed, llm, make_stage) -> None:
    core = make_stage()
    llm.always()
    review = feed.review("e1")
    await core.process([review])
    await world.until_acked(review)
    await core.published()
    assert commits(world) == []


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_two_retry_copies_of_a_review_in_one_batch_are_enriched_and_sent_once(
        guarantee, world, feed, llm, make_stage) -> None:
    """After a restart the stage may read a review's attempt-2 and attempt-3 retry records in
    one batch (seen in test_exactly_once: 9 reviews sent twice, attempts 2 and 3 20 ms apart):
    the first makes the job, the second is a duplicate."""
    core = make_stage(processing_guarantee=guarantee, llm_max_attempts=3)
    review = feed.review("e1")
    await core.process([review])
    llm.respond("e1", status=EnrichStatus.TRANSIENT_FAILURE)
    await world.until_acked(review)
    [second] = world.retries()
    third = feed.event(write_item(replace(read_item(second.value), attempt=3)))

    llm.always()
    copies = [feed.event(second.value), third]
    await core.process(copies)
    await world.until_acked(*copies)
    assert llm.asked == [("e1", 1), ("e1", 2)]
    assert len(world.enriched("e1")) == 1


async def test_an_answer_of_a_review_another_job_joined_first_is_not_sent(
        world, feed, llm, make_stage) -> None:
    """The joining batch sends a job's records only with its join: a second answer of the
    same review (however its job came to be) sends nothing under exactly-once."""
    core = make_stage(**EXACTLY_ONCE)
    review = feed.review("e1")
    await core.process([review])
    await world.until(lambda: llm.was_asked("e1"), what="the first call")
    [job] = core.enricher.in_flight_jobs()
    twin = Job(feed.again(review), job.partition, job.item, job.pane_start_ms, job.late,
               generation=core.generation, ack=job.ack)
    core.owed.submit(twin, generation=core.generation)
    await core.complete([twin], [llm_outcome(twin, label="POSITIVE")])  # answered and kept
    llm.respond("e1", label="NEGATIVE")
    await world.until_acked(review)
    await core.process([feed.order("o1")])
    await core.published()
    assert [r["sentiment"] for r in world.enriched("e1")] == ["POSITIVE"]
