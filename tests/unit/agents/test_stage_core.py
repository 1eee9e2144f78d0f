"""The restaurant stage core on dict tables and fakes: what a user of the outputs relies on.

Dedupe, folding at first sight, closing on the watermark, lateness, the enrichment join,
retries to the DLQ and the outbox, with windows of 5 s (tumbling), 20 s every 5 s
(hopping) and 2 s of grace (``conftest.WINDOWS``). The LLM answers when a test says so.
"""

from __future__ import annotations

import asyncio

import pytest

from agents.llm.heuristic import HEURISTIC_MODEL
from agents.llm.outcome import EnrichStatus
from streams import metrics
from streams.protocol import H_ID, ORDER, RETRY, REVIEW, read_item, write_item

TRANSIENT = EnrichStatus.TRANSIENT_FAILURE


def sample(name: str) -> float:
    """A Prometheus sample of ours (0 before its first increment)."""
    return metrics.REGISTRY.get_sample_value(name) or 0.0


def tumbling_id(start_ms: int, restaurant: str = "rest-1") -> str:
    return f"{restaurant}:TUMBLING:{start_ms}"


def hopping_id(start_ms: int, restaurant: str = "rest-1") -> str:
    return f"{restaurant}:HOPPING:{start_ms}"


# --- the changelogs ----------------------------------------------------------------------------
async def test_a_batch_does_not_wait_for_its_state_to_be_durable_and_batches_publish_in_order(
        world, feed, make_stage, t) -> None:
    """The next batch starts while the marks of the one before are still on their way; each
    batch's marks are durable (the flush) before its changelog records go out, the records
    of one batch before the next's (the last record of a key is its state on restore), and
    an event is acked only once its batch's records are sent (Faust commits after a flush)."""
    core = make_stage()
    world.flush_gate = asyncio.Event()  # the broker is slow to acknowledge
    o1, o2 = feed.order("o1"), feed.order("o2")

    await asyncio.wait_for(core.process([o1]), 5)  # neither batch waits for the broker
    await asyncio.wait_for(core.process([o2]), 5)

    assert world.pane(t.w0).orders_delivered == 2  # the second batch read what the first wrote
    assert (world.history, world.acked) == ([], [])
    world.flush_gate.set()
    await world.until_acked(o1, o2)
    await core.published()
    offsets = [f"ack {e.message.offset}" for e in (o1, o2)]
    assert world.history == ["flush", "publish", offsets[0], "flush", "publish", offsets[1]]


async def test_a_failed_publication_still_sends_the_tables_acks_nothing_and_fails_the_next_batch(
        world, feed, make_stage) -> None:
    """The worker's tables send their changelog records when the batch publishes them
    (streams.faust point 7): when making the marks durable fails, the records of
    what the batch wrote to its local stores still go out, or a recovery elsewhere would
    miss what this worker reads; its events stay unacked, and the next batch raises."""
    core = make_stage()
    o1, o2, o3 = feed.order("o1"), feed.order("o2"), feed.order("o3")
    await core.process([o1])
    await world.until_acked(o1)

    world.flush_error = ConnectionError("broker gone")
    await core.process([o2])
    await core.published()
    assert [[tables is world.tables[0] for tables in batch] for batch in world.published] == [[True], [True]]
    assert not world.is_acked(o2)
    with pytest.raises(ConnectionError):
        await core.process([o3])

    world.flush_error = None  # the broker is back: the stage goes on
    await core.process([o3])
    await world.until_acked(o3)
    assert not world.is_acked(o2)  # uncommitted: the partition's next owner reads it again


@pytest.mark.parametrize("limit", [2, 100])
async def test_answers_wait_while_enrich_max_unjoined_of_them_are_not_durably_joined(
        limit, world, feed, llm, make_stage) -> None:
    """A review whose answer went out but whose join is not durable is enriched again after a
    kill -9; REVIEWPULSE_ENRICH_MAX_UNJOINED bounds how many there are. With a limit of 2 and
    a slow broker, the third answer goes out only after the first two joins are acked; with
    100, all four go out before any ack (the limit is what held them)."""
    core = make_stage(enrich_max_unjoined=limit, llm_batch_size=1, llm_batch_linger_ms=0)
    send = world.send

    async def logged_send(topic, **record):
        if topic == world.topics.enriched:
            world.history.append("enriched")
        return await send(topic, **record)

    world.send = logged_send
    core.ports.send = logged_send
    world.flush_gate = asyncio.Event()  # the broker is slow: no batch becomes durable yet
    llm.always()
    reviews = [feed.review(f"e{i}") for i in range(4)]
    await core.process(reviews)

    await world.until(lambda: len(world.enriched()) >= min(limit, 4), what="the answers the limit lets out")
    assert core.unjoined.count == min(limit, 4)
    world.flush_gate.set()
    await world.until_acked(*reviews)
    await core.published()

    third = [i for i, step in enumerate(world.history) if step == "enriched"][2]
    first_ack = next(i for i, step in enumerate(world.history) if step.startswith("ack"))
    assert (third > first_ack) == (limit == 2), world.history
    assert len(world.enriched()) == 4 and core.unjoined.count == 0


# --- dedupe -----------------------------------------------------------------------------------
@pytest.mark.parametrize("same_batch", [False, True], ids=["next_batch", "same_batch"])
async def test_same_event_id_at_a_second_offset_is_counted_duplicate_acked_and_not_folded(
        same_batch, world, feed, llm, make_stage, t):
    core = make_stage()
    llm.always()
    first = feed.review("e1", rating=4)
    copy = feed.copy(first)
    duplicates = sample("reviewpulse_duplicates_skipped_total")

    if same_batch:
        await core.process([first, copy])
    else:
        await core.process([first])
        await core.process([copy])
    await world.until_acked(first, copy)

    pane = world.pane(t.w0)
    assert (pane.reviews, pane.rating_sum) == (1, 4)
    assert sample("reviewpulse_duplicates_skipped_total") == duplicates + 1
    assert llm.asked == [("e1", 1)]
    assert len(world.enriched("e1")) == 1


async def test_replayed_offset_after_a_restart_is_not_folded_again(world, feed, llm, make_stage, t):
    llm.always()
    review, order = feed.review("e1"), feed.order("o1")
    crashed = make_stage()
    await crashed.process([review, order])
    await world.until_acked(review, order)
    await crashed.stop()

    replayed = [feed.again(review), feed.again(order)]
    await make_stage().process(replayed)  # a new core on the same tables
    await world.until_acked(*replayed)

    pane = world.pane(t.w0)
    assert (pane.reviews, pane.orders_delivered) == (1, 1)
    assert llm.asked == [("e1", 1)]  # its enrichment had joined: not asked again
    assert len(world.enriched("e1")) == 1


async def test_review_replayed_before_its_answer_is_enriched_again_but_folded_once(
        world, feed, llm, make_stage, t):
    review = feed.review("e1")
    crashed = make_stage()
    await crashed.process([review])
    await world.until(lambda: llm.was_asked("e1"), what="the first LLM call")
    await crashed.stop()  # the worker dies while the LLM is thinking

    replay = feed.again(review)
    await make_stage().process([replay])
    llm.respond("e1", label="NEGATIVE")
    await world.until_acked(replay)

    pane = world.pane(t.w0)
    assert (pane.reviews, pane.positive, pane.negative, pane.provisional_labels) == (1, 0, 1, 0)
    assert llm.asked == [("e1", 1), ("e1", 1)]
    assert len(world.enriched("e1")) == 1


async def test_review_and_its_copy_replayed_after_a_restart_are_enriched_once(world, feed, llm, make_stage):
    """The copy was a duplicate when first read; replayed beside its original (both below the
    pane's offset), it is still one, not a second job: with one review per LLM call, both
    were enriched and sent."""
    review = feed.review("e1")
    copy = feed.copy(review)
    later = feed.review("e2")  # the same pane: its offset now covers the copy's too
    crashed = make_stage(llm_batch_size=1)
    await crashed.process([review, copy, later])
    await world.until(lambda: llm.was_asked("e1") and llm.was_asked("e2"), what="the first LLM calls")
    await crashed.stop()  # the worker dies while the LLM is thinking

    replay = [feed.again(review), feed.again(copy), feed.again(later)]
    await make_stage(llm_batch_size=1).process(replay)
    llm.always()
    await world.until_acked(*replay)

    assert sorted(llm.asked) == [("e1", 1), ("e1", 1), ("e2", 1), ("e2", 1)]  # before the crash, and after
    assert len(world.enriched("e1")) == 1


async def test_review_fetched_again_while_its_enrichment_is_under_way_is_not_enriched_twice(
        world, feed, llm, make_stage, t):
    # The consumer seeks back over offsets a stream missed (streams.faust, point 5):
    # the same record can come again to the same worker while its LLM call is in flight.
    core = make_stage()
    review = await in_llm_call(world, feed, llm, core)
    again = feed.again(review)
    await core.process([again])
    await world.until_acked(again)
    llm.respond("e1", label="NEGATIVE")
    await world.until_acked(review)

    assert llm.asked == [("e1", 1)]
    assert len(world.enriched("e1")) == 1
    pane = world.pane(t.w0)
    assert (pane.reviews, pane.negative, pane.provisional_labels) == (1, 1, 0)


# --- folding at first sight -----------------------------------------------------------------
async def test_review_count_rating_and_lag_are_in_the_pane_before_the_llm_answers(
        world, feed, llm, make_stage, t):
    core = make_stage()
    world.clock.now_ms = t.w0 + 2_500  # the review occurred at w0 + 1 s: 1.5 s of processing lag
    review = feed.review("e1", occurred_ms=t.w0 + 1_000, rating=4)

    await core.process([review])
    await world.until(lambda: llm.was_asked("e1"), what="the LLM call")

    pane = world.pane(t.w0)
    assert (pane.reviews, pane.rating_sum) == (1, 4)
    assert (pane.processing_lag.count, pane.processing_lag.sum_ms) == (1, 1_500)
    assert (pane.positive, pane.provisional_labels) == (1, 1)  # the heuristic's label, for now
    await core.published()  # every batch so far durable and its events acked
    assert not world.is_acked(review)

    llm.respond("e1", label="NEGATIVE")
    await world.until_acked(review)
    pane = world.pane(t.w0)
    assert (pane.reviews, pane.rating_sum, pane.positive, pane.negative) == (1, 4, 0, 1)
    assert pane.provisional_labels == 0
    assert pane.processing_lag.count == 1  # the join replaces the label, it counts nothing twice


async def test_order_is_folded_and_acked_at_once_while_the_review_waits_for_its_enrichment(
        world, feed, llm, make_stage, t):
    core = make_stage()
    review, order = feed.review("e1"), feed.order("o1", occurred_ms=t.w0 + 2_000, delay_ms=90_000)

    await core.process([review, order])

    await world.until_acked(order)
    assert not world.is_acked(review)
    delay = world.pane(t.w0).delivery_delay
    assert world.pane(t.w0).orders_delivered == 1
    assert (delay.count, delay.sum_ms, delay.max_ms) == (1, 90_000, 90_000)

    llm.respond("e1")
    await world.until_acked(review)
    assert [r["sentiment"] for r in world.enriched("e1")] == ["NEGATIVE"]


# --- closing on the watermark ---------------------------------------------------------------
async def test_tick_past_end_plus_grace_sends_one_exact_aggregate_per_closed_window(
        world, feed, llm, make_stage, t):
    core = make_stage()
    llm.always(label="NEGATIVE", cost_micro_usd=30)
    events = [feed.review("e1", occurred_ms=t.w0 + 1_000, rating=4),
              feed.review("e2", occurred_ms=t.w0 + 3_000, rating=2),
              feed.order("o1", occurred_ms=t.w0 + 4_000, delay_ms=60_000),
              feed.review("e3", occurred_ms=t.w1 + 500, rating=5)]  # the next window
    await core.process(events)
    await world.until_acked(*events)

    await core.process([feed.tick(t.closing(t.w0) - 1)])
    assert world.aggregates() == []  # end + grace not reached yet

    await core.process([feed.tick(t.closing(t.w0))])
    [tumbling] = world.aggregates("TUMBLING")
    assert tumbling["aggregate_id"] == tumbling_id(t.w0)
    assert (tumbling["window_start"], tumbling["window_end"]) == (t.w0, t.w1)
    assert (tumbling["reviews"], tumbling["rating_sum"]) == (2, 6)
    assert (tumbling["negative"], tumbling["positive"]) == (2, 0)
    assert (tumbling["orders_delivered"], tumbling["delivery_delay"]["sum_ms"]) == (1, 60_000)
    assert (tumbling["llm_calls"], tumbling["cost_micro_usd"]) == (2, 60)
    assert (tumbling["late_events"], tumbling["provisional_labels"]) == (0, 0)
    [sent] = [s for s in world.on(world.topics.aggregates) if s.json()["aggregate_id"] == tumbling_id(t.w0)]
    assert sent.headers == [(H_ID, tumbling_id(t.w0).encode())]
    assert (sent.key, sent.partition) == (b"rest-1", 0)  # the state partition (agents.outbox)
    assert world.aggregate(hopping_id(t.w1 - 20_000))["reviews"] == 2  # the hopping window ending at w1

    sent_so_far = len(world.aggregates())
    await core.process([feed.tick(t.closing(t.w0) + 1_000)])
    assert len(world.aggregates()) == sent_so_far


@pytest.mark.parametrize("restart", [False, True], ids=["same_worker", "after_restart"])
async def test_idle_restaurant_closes_on_a_later_tick_alone(restart, world, feed, llm, make_stage, t):
    core = make_stage()
    llm.always()
    review = feed.review("e1", restaurant="rest-idle")
    await core.process([review])
    await world.until_acked(review)
    if restart:
        await core.stop()
        core = make_stage()

    await core.process([feed.tick(t.closing(t.w0))])

    assert world.aggregate(tumbling_id(t.w0, "rest-idle"))["reviews"] == 1


# --- late events ----------------------------------------------------------------------------
async def test_late_event_counts_in_the_open_window_not_in_totals_and_its_review_is_enriched(
        world, feed, llm, make_stage, t):
    core = make_stage()
    llm.always(label="NEGATIVE")
    on_time = feed.review("e1", occurred_ms=t.w0 + 1_000)
    await core.process([on_time])
    await world.until_acked(on_time)
    await core.process([feed.tick(t.closing(t.w0))])
    late_events = sample("reviewpulse_late_events_total")

    late_review = feed.review("e2", occurred_ms=t.w0 + 2_000)
    late_order = feed.order("o2", occurred_ms=t.w0 + 3_000)
    await core.process([late_review, late_order])
    await world.until_acked(late_review, late_order)

    assert sample("reviewpulse_late_events_total") == late_events + 2
    assert (world.pane(t.w0).reviews, world.pane(t.w0).orders_delivered) == (1, 0)
    assert [r["sentiment"] for r in world.enriched("e2")] == ["NEGATIVE"]
    await core.process([feed.tick(t.closing(t.w1))])
    open_then = world.aggregate(tumbling_id(t.w1))
    assert (open_then["late_events"], open_then["reviews"], open_then["orders_delivered"]) == (2, 0, 0)
    assert open_then["provisional_labels"] == 0
    assert world.aggregate(tumbling_id(t.w0))["reviews"] == 1  # sent once, before; never again


async def test_late_event_after_a_restart_is_reported_by_the_open_tumbling_window(
        world, feed, llm, make_stage, t):
    core = make_stage()
    llm.always()
    on_time = feed.review("e1", occurred_ms=t.w0 + 1_000)
    await core.process([on_time])
    await world.until_acked(on_time)
    await core.process([feed.tick(t.closing(t.w0))])
    await core.stop()
    restarted = make_stage()  # its watermark starts from nothing; the closure record says w0 closed

    late = feed.order("o2", occurred_ms=t.w0 + 3_000)
    await restarted.process([late])
    await restarted.process([feed.tick(t.closing(t.w1))])

    assert world.aggregate(tumbling_id(t.w0))["late_events"] == 0  # sent before the late event came
    reported = [a["late_events"] for a in world.aggregates("TUMBLING") if a["window_start"] >= t.w1]
    assert sum(reported) == 1, f"late event not in any tumbling window closed after it: {reported}"


async def test_late_review_replayed_after_a_restart_is_counted_late_once(world, feed, llm, make_stage, t):
    core = make_stage()
    llm.always()
    on_time = feed.review("e1", occurred_ms=t.w0 + 1_000)
    await core.process([on_time])
    await world.until_acked(on_time)
    await core.process([feed.tick(t.closing(t.w0))])
    llm.never()  # the LLM goes quiet: the late review stays pending, its offset uncommitted
    late = feed.review("e2", occurred_ms=t.w0 + 2_000)
    await core.process([late])
    await world.until(lambda: llm.was_asked("e2"), what="the late review's LLM call")
    await core.stop()

    restarted = make_stage()  # replays from the late review, the first unacked offset
    replay = feed.again(late)
    await restarted.process([replay])
    llm.always()
    await world.until_acked(replay)
    await restarted.process([feed.tick(t.closing(t.w1))])

    hopping = world.aggregate(hopping_id(t.w0 - 10_000))  # [w0 - 10 s, w2): holds w0 and w1
    assert hopping["late_events"] == 1


# --- the enrichment join --------------------------------------------------------------------
async def test_llm_answer_before_the_close_gives_the_aggregate_the_llm_label(world, feed, llm, make_stage, t):
    core = make_stage()
    review = feed.review("e1")  # the heuristic says POSITIVE
    await core.process([review])
    llm.respond("e1", label="NEGATIVE", score=-0.6, categories=("delivery_time",))
    await world.until_acked(review)

    await core.process([feed.tick(t.closing(t.w0))])

    aggregate = world.aggregate(tumbling_id(t.w0))
    assert (aggregate["positive"], aggregate["negative"], aggregate["score_sum_milli"]) == (0, 1, -600)
    assert aggregate["categories"] == {"delivery_time": 1}
    assert (aggregate["llm_calls"], aggregate["cost_micro_usd"]) == (1, 30)
    assert aggregate["provisional_labels"] == 0


async def test_llm_answer_after_the_close_goes_out_enriched_and_never_resends_the_aggregate(
        world, feed, llm, make_stage, t):
    core = make_stage()
    review = await in_llm_call(world, feed, llm, core)
    await core.process([feed.tick(t.closing(t.w0))])
    sent = world.aggregate(tumbling_id(t.w0))
    assert (sent["positive"], sent["negative"], sent["provisional_labels"]) == (1, 0, 1)
    aggregates_sent = len(world.aggregates())
    after_close = sample("reviewpulse_enrichment_after_close_total")

    llm.respond("e1", label="NEGATIVE")
    await world.until_acked(review)

    [enriched] = world.enriched("e1")
    assert (enriched["sentiment"], enriched["status"]) == ("NEGATIVE", "ENRICHED")
    assert len(world.aggregates()) == aggregates_sent
    assert sample("reviewpulse_enrichment_after_close_total") == after_close + 1
    # The answer joined the pane: a hopping window closing later reports the LLM's label.
    await core.process([feed.tick(t.closing(t.w1))])
    assert world.aggregate(tumbling_id(t.w0)) == sent  # still the one sent, unchanged
    later = world.aggregate(hopping_id(t.w0 - 10_000))
    assert (later["positive"], later["negative"], later["provisional_labels"]) == (0, 1, 0)


async def test_llm_that_never_answers_holds_no_window_and_its_review_stays_unacked(
        world, feed, llm, make_stage, t):
    core = make_stage()
    review = await in_llm_call(world, feed, llm, core)

    await core.process([feed.tick(t.closing(t.w0))])

    aggregate = world.aggregate(tumbling_id(t.w0))
    assert (aggregate["reviews"], aggregate["positive"], aggregate["provisional_labels"]) == (1, 1, 1)
    await core.published()  # every batch so far durable and its events acked
    assert not world.is_acked(review)
    assert world.enriched() == []


# --- transient failures, retries, the DLQ ----------------------------------------------------
async def in_llm_call(world, feed, llm, core, event_id: str = "e1"):
    """A review folded at first sight whose LLM call is in flight (the fake LLM holds it)."""
    review = feed.review(event_id)
    await core.process([review])
    await world.until(lambda: llm.was_asked(event_id), what="the LLM call")
    return review


async def fail_once(world, feed, llm, core, t):
    """A review folded at w0 whose first LLM call failed transiently; returns (event, retry sent)."""
    world.clock.now_ms = t.w0 + 1_500
    review = feed.review("e1")
    await core.process([review])
    llm.respond("e1", attempt=1, status=TRANSIENT)
    await world.until_acked(review)
    [sent] = world.retries()
    return review, sent


async def test_transient_failure_sends_a_retry_for_the_folded_pane_and_acks_the_original(
        world, feed, llm, make_stage, t):
    core = make_stage(llm_retry_delay_s=5.0)
    review, sent = await fail_once(world, feed, llm, core, t)

    retry = read_item(sent.value)
    assert (retry.kind, retry.attempt, retry.pane_start_ms, retry.late) == (RETRY, 2, t.w0, False)
    assert retry.record == read_item(review.message.value).record
    assert retry.not_before_ms == t.w0 + 1_500 + 5_000
    assert sent.key == b"rest-1"
    await world.until_acked(review)
    assert world.enriched() == []
    assert world.pane(t.w0).provisional_labels == 1  # still the heuristic's label in the pane


async def test_retry_record_is_enriched_and_joined_without_folding_again(world, feed, llm, make_stage, t):
    core = make_stage()
    _, sent = await fail_once(world, feed, llm, core, t)

    retry = feed.event(sent.value)  # back on the by-restaurant topic, at a new offset
    await core.process([retry])
    llm.respond("e1", attempt=2, label="NEGATIVE")
    await world.until_acked(retry)

    pane = world.pane(t.w0)
    assert (pane.reviews, pane.rating_sum, pane.positive, pane.negative) == (1, 4, 0, 1)
    assert pane.provisional_labels == 0
    [enriched] = world.enriched("e1")
    assert (enriched["sentiment"], enriched["attempts"]) == ("NEGATIVE", 2)
    # A second copy of the retry record finds the review joined: acked, not asked again.
    copy = feed.copy(retry)
    await core.process([copy])
    await world.until_acked(copy)
    assert llm.asked == [("e1", 1), ("e1", 2)]


async def test_two_copies_of_a_retry_record_in_one_batch_join_once(world, feed, llm, make_stage, t):
    core = make_stage()
    _, sent = await fail_once(world, feed, llm, core, t)

    retry = feed.event(sent.value)
    copy = feed.copy(retry)  # the retry stage forwarded it twice (a crash before its commit)
    await core.process([retry, copy])
    llm.respond("e1", attempt=2, label="NEGATIVE")
    await world.until_acked(retry, copy)

    pane = world.pane(t.w0)
    assert (pane.reviews, pane.positive, pane.negative, pane.provisional_labels) == (1, 0, 1, 0)
    assert llm.asked == [("e1", 1), ("e1", 2)]  # the two copies were asked once
    assert len(world.enriched("e1")) == 1


async def test_a_retry_copy_arriving_while_the_first_is_being_enriched_is_a_duplicate(
        world, feed, llm, make_stage, t):
    core = make_stage()
    _, sent = await fail_once(world, feed, llm, core, t)

    retry = feed.event(sent.value)
    await core.process([retry])
    await world.until(lambda: llm.was_asked("e1", 2), what="the retry's LLM call")
    copy = feed.copy(retry)  # a later batch, while that call is in flight
    await core.process([copy])
    await world.until_acked(copy)
    llm.respond("e1", attempt=2, label="NEGATIVE")
    await world.until_acked(retry)

    assert llm.asked == [("e1", 1), ("e1", 2)]
    assert len(world.enriched("e1")) == 1
    pane = world.pane(t.w0)
    assert (pane.reviews, pane.negative, pane.provisional_labels) == (1, 1, 0)


async def test_original_replayed_with_its_retry_copy_after_a_crash_folds_and_joins_once(
        world, feed, llm, make_stage, t):
    crashed = make_stage()
    review, sent = await fail_once(world, feed, llm, crashed, t)
    await crashed.stop()  # before the retry copy came back; the original's ack was never committed

    restarted = make_stage()
    replay, retry = feed.again(review), feed.event(sent.value)
    await restarted.process([replay, retry])
    llm.respond("e1", label="CRITICAL")
    await world.until_acked(replay, retry)
    later = feed.copy(retry)  # and one more copy of the retry, after the join
    await restarted.process([later])
    await world.until_acked(later)

    pane = world.pane(t.w0)
    assert (pane.reviews, pane.critical, pane.positive, pane.provisional_labels) == (1, 1, 0, 0)
    assert len(world.enriched("e1")) == 1
    assert len(llm.asked) == 2  # the failed call and one call for both copies


async def test_review_failing_all_llm_max_attempts_goes_to_the_dlq_with_a_fallback_record(
        world, feed, llm, make_stage, t):
    core = make_stage(llm_max_attempts=3)
    review = event = feed.review("e1")
    await core.process([review])
    for attempt in (1, 2, 3):
        llm.respond("e1", attempt=attempt, status=TRANSIENT)
        await world.until_acked(event)
        if attempt < 3:
            event = feed.event(world.retries()[-1].value)
            await core.process([event])

    assert [read_item(s.value).attempt for s in world.retries()] == [2, 3]
    [(origin, details)] = world.dead_letters
    assert (details["stage"], details["reason"], details["attempts"]) == ("enrich", "llm_exhausted", 3)
    assert origin == read_item(review.message.value).origin  # the producer's bytes, replayable
    [enriched] = world.enriched("e1")
    assert (enriched["status"], enriched["model"], enriched["attempts"]) == ("FALLBACK", HEURISTIC_MODEL, 3)
    pane = world.pane(t.w0)
    assert (pane.reviews, pane.fallbacks, pane.provisional_labels) == (1, 1, 0)


# --- the outbox -------------------------------------------------------------------------------
async def test_aggregate_the_outbox_found_already_sent_is_not_sent_again(world, feed, llm, make_stage, t):
    core = make_stage(already_sent={tumbling_id(t.w0)})  # sent before a crash, found by the scan
    llm.always()
    review = feed.review("e1")
    await core.process([review])
    await world.until_acked(review)

    await core.process([feed.tick(t.closing(t.w0))])

    assert world.aggregates("TUMBLING") == []
    assert world.aggregate(hopping_id(t.w1 - 20_000))["reviews"] == 1  # the others still go out


# --- malformed internal records -----------------------------------------------------------
@pytest.mark.parametrize("value", [
    b"\x8f\x00garbage",
    b'{"k":"tick","s":"w1"}',  # a tick without its watermark
    b'{"k":"review","r":"not a record","o":["t",0,1]}',
    None,
], ids=["bytes", "tick", "item", "tombstone"])
async def test_malformed_by_restaurant_record_is_dead_lettered_and_the_batch_goes_on(
        value, world, feed, llm, make_stage, t):
    core = make_stage()
    bad = feed.event(value)
    order = feed.order("o1")

    await core.process([bad, order])

    [(origin, details)] = world.dead_letters
    assert (details["stage"], details["reason"]) == ("restaurant", "bad_internal_record")
    assert (origin.topic, origin.offset, origin.value) == (bad.message.topic, bad.message.offset, value)
    await world.until_acked(bad, order)
    assert world.pane(t.w0).orders_delivered == 1


@pytest.mark.parametrize(("kind", "drop"), [
    (REVIEW, "text"),  # the fold reads it
    (REVIEW, "review_id"),  # the enriched record reads it, once the LLM answered
    (ORDER, "delivered_at"),
], ids=["review_without_text", "review_without_review_id", "order_without_delivered_at"])
async def test_item_missing_a_field_the_stage_reads_is_dead_lettered_and_the_batch_goes_on(
        kind, drop, world, feed, llm, make_stage, t):
    core = make_stage()
    source = feed.review("e9") if kind == REVIEW else feed.order("o9")  # built, never processed
    item = read_item(source.message.value)
    record = item.record["entity"] if kind == REVIEW else item.record
    del record[drop]
    bad = feed.event(write_item(item))
    order = feed.order("o1")

    await core.process([bad, order])

    assert [(d["stage"], d["reason"]) for _, d in world.dead_letters] == [
        ("restaurant", "bad_internal_record")]
    await world.until_acked(bad, order)
    assert world.pane(t.w0).orders_delivered == 1
