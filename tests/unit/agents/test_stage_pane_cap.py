"""A review flood on one restaurant under a slow LLM: its pane owes at most its cap.

The LLM never answers here. Reviews past ``pane_max_pending`` are folded as final with the
heuristic (FALLBACK, counted in ``reviewpulse_enrichment_shed``), their ``reviews.enriched``
goes out with their batch, and they are acked with it; the pane record stays small.
"""

from __future__ import annotations

from faust.serializers.codecs import get_codec

from streams import metrics
from streams.protocol import pane_key
from tables.values import PANE_MAX_BYTES

JSON = get_codec("json")  # what the worker's pane table writes


def shed_count() -> float:
    return metrics.REGISTRY.get_sample_value("reviewpulse_enrichment_shed_total") or 0.0


async def test_a_flood_under_a_slow_llm_keeps_the_pane_under_its_cap_and_the_rest_flows(
        world, feed, llm, make_stage, t):
    core = make_stage(pane_max_pending=5)
    shed_before = shed_count()
    reviews = [feed.review(f"e{i}", occurred_ms=t.w0 + 1_000) for i in range(40)]

    for start in range(0, 40, 10):  # four batches of the one restaurant
        await core.process(reviews[start:start + 10])
    await core.published()

    pane = world.pane(t.w0)
    assert len(pane.pending) == 5 and pane.provisional_labels == 5
    assert (pane.reviews, pane.fallbacks) == (40, 35)
    assert len(JSON.dumps(world.tables[0].panes[pane_key("rest-1", t.w0)])) < PANE_MAX_BYTES
    shed = reviews[5:]
    assert all(world.is_acked(r) for r in shed)
    assert not any(world.is_acked(r) for r in reviews[:5])  # their LLM calls never answer
    enriched = world.enriched()
    assert sorted(r["event_id"] for r in enriched) == sorted(f"e{i}" for i in range(5, 40))
    assert {r["status"] for r in enriched} == {"FALLBACK"}
    assert shed_count() - shed_before == 35


async def test_a_shed_review_replayed_after_a_restart_is_not_folded_or_sent_again(
        world, feed, llm, make_stage, t):
    crashed = make_stage(pane_max_pending=1)
    first, second = feed.review("e1"), feed.review("e2")
    await crashed.process([first, second])
    await crashed.published()
    await crashed.stop()
    assert [r["event_id"] for r in world.enriched()] == ["e2"]

    core = make_stage(pane_max_pending=1)
    await core.process([feed.again(second)])
    await core.published()

    assert world.is_acked(second)
    assert (world.pane(t.w0).reviews, world.pane(t.w0).fallbacks) == (2, 1)
    assert [r["event_id"] for r in world.enriched()] == ["e2"]
