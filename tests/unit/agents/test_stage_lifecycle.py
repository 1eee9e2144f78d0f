"""The stage across a rebalance: ``abandon()`` gives up every owed review, ``reset_due()``
reads the (restored) tables again. Both run in the worker at every rebalance; a mistake in
either loses a review or closes a window with another owner's stale counts."""

from __future__ import annotations

import asyncio

from agents.stage.jobs import Job, OwedReviews
from agents.stage.publish import Unjoined
from streams.protocol import Item, Origin


async def test_abandon_gives_up_queued_in_flight_and_answered_reviews_and_drops_their_late_answers(
        world, feed, llm, make_stage, t) -> None:
    core = make_stage(llm_concurrency=1, llm_batch_size=1)
    first, second, third = feed.review("e1"), feed.review("e2"), feed.review("e3")
    await core.process([first, second, third])
    await world.until(lambda: llm.was_asked("e1"), what="the first call in flight")

    given_up = core.abandon()  # Faust is about to wait for every unacked event: a rebalance

    assert {m.offset for m in given_up} == {e.message.offset for e in (first, second, third)}
    assert core.generation == 1 and core.unjoined.count == 0 and "e1" not in core.owed
    llm.respond("e1")  # the call under way answers after the rebalance: dropped
    await asyncio.wait_for(_calls_done(core), 5)
    await core.published()
    assert world.enriched() == [] and not any(world.is_acked(e) for e in (first, second, third))
    assert world.pane(t.w0).owes("e1")  # still owed: the next owner replays and enriches it

    # The partition comes back to this worker: the replay is enriched again, and joins once.
    llm.always()
    replays = [feed.again(e) for e in (first, second, third)]
    await core.process(replays)
    await world.until_acked(*replays)
    assert sorted(r["event_id"] for r in world.enriched()) == ["e1", "e2", "e3"]
    pane = world.pane(t.w0)
    assert pane.reviews == 3 and not any(pane.owes(e) for e in ("e1", "e2", "e3"))


async def test_reset_due_reads_the_tables_another_owner_wrote_before_closing(
        world, feed, llm, make_stage, t) -> None:
    this = make_stage()
    await this.process([feed.review("e1")])  # this worker's cache: one review in the pane
    other = make_stage()  # the partition moved: another owner folds a second review
    await other.process([feed.review("e2")])
    await other.published()
    assert world.pane(t.w0).reviews == 2

    this.reset_due()  # the partition is assigned back, its tables restored
    tick = feed.tick(t.closing(t.w0))
    await this.process([tick])
    await world.until_acked(tick)

    (aggregate,) = [a for a in world.aggregates("TUMBLING") if a["window_start"] == t.w0]
    assert aggregate["reviews"] == 2  # from the tables, not the cache of before the move


async def _calls_done(core) -> None:
    """Until no enrichment call is under way (its answer's completion has run)."""
    while core.enricher.in_flight_jobs():
        await asyncio.sleep(0.01)


def _job(event_id: str) -> Job:
    origin = Origin(topic="reviews.created", partition=0, offset=1, key=b"k", value=b"v", headers=())
    item = Item(kind="REVIEW", record={"event_id": event_id}, origin=origin)
    return Job(event=object(), partition=0, item=item, pane_start_ms=0, late=False)


def test_an_owed_review_is_released_once_and_only_by_its_own_generation() -> None:
    owed = OwedReviews()
    original, copy = _job("e1"), _job("e1")
    owed.submit(original, generation=0)
    owed.submit(copy, generation=0)
    owed.release(original, generation=0)
    owed.release(original, generation=0)  # twice: counted once
    assert "e1" in owed  # the copy is still owed
    owed.release(copy, generation=1)  # an answer after a rebalance releases nothing
    assert "e1" in owed
    owed.release(copy, generation=0)
    assert "e1" not in owed


async def test_answers_wait_for_room_under_the_unjoined_bound_and_a_reset_frees_them() -> None:
    unjoined = Unjoined(limit=2)
    unjoined.add(2)
    waiting = asyncio.ensure_future(unjoined.room_for(1))
    await asyncio.sleep(0)
    assert not waiting.done()
    unjoined.joined(generation=5, n=2)  # an older generation's joins do not free room
    await asyncio.sleep(0)
    assert not waiting.done() and unjoined.count == 2
    unjoined.reset(generation=1)  # a rebalance: nothing is waiting to join any more
    await asyncio.wait_for(waiting, 1)
    assert unjoined.count == 0
