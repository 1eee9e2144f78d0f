"""The enrichment backlog is bounded in bytes: long reviews under a slow LLM are shed to the
heuristic, never lost, and the bytes held stay under the bound (issue 30, finding 9).

The finding: the backlog was capped at 20,000 reviews, each up to ~70 KB in memory.
"""

from __future__ import annotations

import tracemalloc

from faust.events import Event
from faust.types.tuples import Message

from agents.stage.jobs import Job, job_bytes
from streams import metrics
from streams.protocol import REVIEW, Item, Origin, read_item, write_item
from streams.settings import MIB
from tests.unit.agents.conftest import review_record

# 5,000 characters (the default text cap), one of them an emoji: Python then holds the whole
# text at 4 bytes a character, the widest case.
LONG_TEXT = "Comida fria e atrasada. " * 208 + "x" * 7 + "😡"


def evicted(part: str) -> float:
    return metrics.REGISTRY.get_sample_value("reviewpulse_memory_evicted_total", {"part": part}) or 0.0


async def test_long_reviews_past_the_byte_bound_are_shed_with_the_heuristic_and_nothing_is_lost(
        world, feed, llm, make_stage, t):
    llm.never()  # the slow LLM: nothing queued ever leaves
    core = make_stage(enrich_backlog_max_bytes=MIB, enrich_max_pending=20_000, pane_max_pending=1_000)
    evicted_before = evicted("enrich_backlog")
    reviews = [feed.review(f"e{i}", text=LONG_TEXT, occurred_ms=t.w0 + 1_000) for i in range(60)]

    for start in range(0, 60, 10):
        await core.process(reviews[start:start + 10])
        assert core.enricher.pending_bytes <= MIB
    await core.published()

    kept = core.enricher.pending
    assert 0 < kept < 60 and core.enricher.pending_bytes <= MIB
    shed = 60 - kept
    assert evicted("enrich_backlog") - evicted_before == shed == core.enricher.shed_for_bytes
    # Every shed review has its heuristic answer out and is acked; the kept ones wait unacked.
    await world.until(lambda: len(world.enriched()) == shed, what="the shed reviews' FALLBACK records")
    assert {r["status"] for r in world.enriched()} == {"FALLBACK"}
    shed_ids = {r["event_id"] for r in world.enriched()}
    await world.until(lambda: sum(world.is_acked(r) for r in reviews) == shed, what="the shed reviews acked")
    assert all(world.is_acked(r) == (f"e{i}" in shed_ids) for i, r in enumerate(reviews))
    assert world.pane(t.w0).reviews == 60


async def test_the_backlog_bytes_return_to_zero_once_answered(world, feed, llm, make_stage, t):
    core = make_stage(enrich_backlog_max_bytes=MIB)
    reviews = [feed.review(f"e{i}", text=LONG_TEXT) for i in range(10)]
    await core.process(reviews)
    assert core.enricher.pending_bytes > 0
    llm.always()
    await world.until_acked(*reviews)
    assert core.enricher.pending == 0 and core.enricher.pending_bytes == 0


def test_the_job_estimate_is_not_below_what_python_allocates() -> None:
    """Faust's own Event and Message, the decoded Item, its Job: the estimate covers them."""
    for text in ("short review", LONG_TEXT, "é" * 5_000, "x" * 5_000):
        values = []
        for i in range(300):
            record = review_record(f"e{i}", text=text, restaurant=f"restaurant-{i:04d}")
            original = b"\x00\x00\x00\x00\x01" + text.encode() + b"\x00" * 200  # the Avro bytes
            values.append(write_item(Item(kind=REVIEW, record=record, origin=Origin(
                "reviews.created", 0, i, record["event_id"].encode(), original, (("trace_id", b"t"),), 1))))
        tracemalloc.start()
        jobs = []
        for i, value in enumerate(values):
            message = Message("by-restaurant", 0, i, 1.0, 0, [("trace_id", b"t")], b"k", value, None, 1,
                              len(value))
            event = Event(None, b"k", value, message.headers, message)
            jobs.append(Job(event, 0, read_item(value), 0, False))
        allocated, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        held = allocated + sum(len(v) + 33 for v in values)  # the values were made before tracing
        estimated = sum(job_bytes(job) for job in jobs)
        assert held <= estimated <= 3 * held, (text[:10], held, estimated)
