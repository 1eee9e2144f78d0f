"""No producer input loses, stalls or hides an event: a hostile stream through the real pipeline.

Schema-valid but hostile reviews (ids that look like internal state keys, empty and huge
ids, times at both ends of the calendar, ratings that would overflow a sum, control and
bidi characters, non-BMP text), poison bytes, and forged records on the internal topics.
Every input ends in ``reviews.enriched`` or the DLQ with a reason; the worker's outcome
counters satisfy consumed = enriched + folded + dead-lettered + duplicate + waiting in
retry, exactly; ordinary reviews produced after the hostile ones still flow.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_pipeline_support import ALERTS, DLQ, ENRICHED, Outputs, open_outputs

from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.embedded]

REVIEWS_CREATED = "reviews.created"
AGGREGATES = "restaurants.aggregates"


@pytest.fixture
def outputs(stack, worker) -> Iterator[Any]:
    yield from open_outputs(stack)


def outcome_counts(worker: Any) -> dict[str, float]:
    """``consumed`` and each outcome of reviews.created, from the worker's /metrics."""
    text = httpx.get(f"{worker.url}/metrics", timeout=5).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("topic") != REVIEWS_CREATED or not sample.name.endswith("_total"):
                continue
            if sample.name == "reviewpulse_events_consumed_total":
                counts["consumed"] = sample.value
            elif sample.name == "reviewpulse_input_outcomes_total":
                counts[sample.labels["outcome"]] = sample.value
    return counts


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {k: int(after.get(k, 0) - before.get(k, 0)) for k in after}


def identity_gap(d: dict[str, int]) -> int:
    """consumed - (enriched + folded + dead-lettered + duplicate + waiting in retry): 0 when whole."""
    waiting = d.get("retry_scheduled", 0) - d.get("retry_returned", 0)
    return d.get("consumed", 0) - (d.get("enriched", 0) + d.get("folded", 0) + d.get("dead_lettered", 0)
                                   + d.get("duplicate", 0) + waiting)


def test_hostile_stream_every_record_accounted_for_and_ordinary_records_still_flow(
        stack, worker, producer, outputs, review_factory):
    before = outcome_counts(worker)
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    passing = [  # valid however odd: enriched, with their state kept apart from ours
        review_factory(restaurant_id="~p0"), review_factory(restaurant_id="~out0"),
        review_factory(restaurant_id=f"r:{tag}"), review_factory(restaurant_id=f"a|{now}"),
        review_factory(text=f"Ótimo 🍕🍕 {tag}\u0007 com \u202eocult\u202c e \u200bzero"),
        review_factory(restaurant_id=f"rest-{tag}-\U0001f355"),
    ]
    refused = {  # dead-lettered with a reason, one each
        "empty id": review_factory(restaurant_id=""),
        "whitespace id": review_factory(restaurant_id="   "),
        "huge id": review_factory(restaurant_id="x" * 10_000),
        "far past": review_factory(occurred_at=0),
        "far future": review_factory(occurred_at=253_402_300_799_000),
        "overflowing rating": review_factory(rating=2**62),
    }
    duplicate = passing[0]
    for review in [*passing, *refused.values(), duplicate]:
        producer.send_review(review)
    producer.send_raw(REVIEWS_CREATED, b"\x00\x00\x00\x00\x07garbage", key=b"poison")
    producer.send_raw(REVIEWS_CREATED, b"not avro at all", key=b"poison")
    # Forged internal records: a bogus payload on the by-restaurant topic, a bogus retry
    # record. (A forged tick is capped at the clock plus the skew: a unit test, since on the
    # shared session worker it would move other tests' windows.)
    by_restaurant = "reviewpulse-by-restaurant"
    producer.send_raw(by_restaurant, b'{"k":"review","r":{}}', key=b"forged")
    producer.send_raw("reviews.retry", b'{"k":"retry","nb":99999999999999}', key=b"forged")

    outputs.wait_enriched({r["event_id"] for r in passing}, timeout_s=60)
    letters = outputs.wait_for(DLQ, lambda v: v["trace_id"] in {r["metadata"]["trace_id"]
                                                             for r in refused.values()},
                               count=len(refused), timeout_s=60)
    reasons = {v.value["trace_id"]: v.value["reason"] for v in letters}
    by_case = {case: reasons.get(r["metadata"]["trace_id"]) for case, r in refused.items()}
    assert by_case == {"empty id": "invalid_id", "whitespace id": "invalid_id", "huge id": "invalid_id",
                       "far past": "event_time_too_old", "far future": "event_time_in_future",
                       "overflowing rating": "invalid_value"}, by_case
    forged = outputs.wait_for(DLQ, lambda v: v["reason"] == "bad_internal_record"
                              and v["key"] == b"forged", count=2, timeout_s=30)
    assert {f.value["stage"] for f in forged} == {"restaurant", "retry"}

    # Ordinary reviews produced after the hostile ones: how soon do they flow?
    sent_at = time.monotonic()
    later = [review_factory(text=f"Chegou quente, obrigado {i} {tag}") for i in range(20)]
    for review in later:
        producer.send_review(review)
    outputs.wait_enriched({r["event_id"] for r in later}, timeout_s=30)
    print(f"\n20 ordinary reviews after the hostile stream: all enriched {time.monotonic() - sent_at:.2f} s "
          "after they were produced")
    [enriched] = outputs.enriched([passing[4]["event_id"]])
    assert "\u202e" not in enriched.value["text"] and "\u0007" not in enriched.value["text"]
    assert "🍕" in enriched.value["text"]

    # The accounting identity of the worker's own counters, exactly.
    final = until(lambda: delta(outcome_counts(worker), before), timeout_s=30,
                  what="consumed = enriched + folded + dead-lettered + duplicate + in retry",
                  done=lambda d: identity_gap(d) == 0)
    print(f"reviews.created outcomes during the hostile run: {final}")
    produced = len(passing) + len(refused) + 1 + 2 + len(later)
    assert final["consumed"] >= produced
    assert final["dead_lettered"] >= len(refused) + 2
    assert final["duplicate"] >= 1


def test_a_late_event_has_a_small_processing_lag_its_age_apart_and_raises_no_lag_alert(
        stack, worker, producer, review_factory):
    """Processing lag counts from the record reaching Kafka; event age from occurred_at."""
    outputs = Outputs(stack, topics=(ENRICHED, ALERTS, AGGREGATES))
    try:
        _late_event_case(outputs, producer, review_factory)
    finally:
        outputs.close()


def _late_event_case(outputs: Any, producer: Any, review_factory: Any) -> None:
    restaurant = f"rest-late-{uuid.uuid4().hex[:8]}"
    old = review_factory(restaurant_id=restaurant, occurred_at=int(time.time() * 1000) - 600_000)
    fresh = review_factory(restaurant_id=restaurant)
    producer.send_review(old)
    producer.send_review(fresh)
    records = {r.value["event_id"]: r.value
               for r in outputs.wait_enriched([old["event_id"], fresh["event_id"]])}
    late = records[old["event_id"]]
    assert late["processing_lag_ms"] < 5_000, late["processing_lag_ms"]
    assert late["event_age_ms"] >= 600_000
    [aggregate] = outputs.wait_for(AGGREGATES, lambda v: v["restaurant_id"] == restaurant
                                   and v["window_kind"] == "TUMBLING", timeout_s=30)
    assert aggregate.value["processing_lag"]["max_ms"] < 5_000
    outputs.poll()
    lag_alerts = outputs.where(ALERTS, lambda v: v["restaurant_id"] == restaurant
                               and v["rule"] == "processing_lag")
    assert lag_alerts == []
