"""``reviewpulse trace`` builds one review's timeline from every topic's records (issue 33.2):
found by any of its ids, in time order, each retry with its attempt and reason, dead
letters with theirs, and the windows that counted it with its final or provisional label."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.protocol import RETRY, REVIEW, Item, Origin, read_item, write_item
from streams.topics import AGGREGATES, CRITICAL_ALERT, DLQ, REVIEWS_CREATED, REVIEWS_ENRICHED
from streams.topics import RETRY as RETRY_TOPIC
from streams.trace import DEFAULT_SPAN_MS, Seen, Wanted, build, format_timeline, time_range
from tests.records import review_created

T0 = 1_796_000_000_000
BY_RESTAURANT = "reviewpulse-by-restaurant"


def enriched(review: dict[str, Any], *, status: str = "ENRICHED") -> dict[str, Any]:
    entity = review["entity"]
    return {"event_id": review["event_id"], "review_id": entity["review_id"],
            "restaurant_id": entity["restaurant_id"], "occurred_at": review["occurred_at"],
            "trace_id": review["metadata"]["trace_id"], "status": status, "sentiment": "NEGATIVE",
            "model": "sim-1", "prompt_version": "v3", "attempts": 2, "cache_hit": False,
            "processing_lag_ms": 900, "budget_reason": None, "rating": entity["rating"],
            "sentiment_score": -0.8}


def aggregate(restaurant: str, kind: str, start: int, end: int, closed: int) -> dict[str, Any]:
    return {"aggregate_id": f"{restaurant}:{kind}:{start}", "restaurant_id": restaurant, "window_kind": kind,
            "window_start": start, "window_end": end, "closed_at": closed, "reviews": 3,
            "provisional_labels": 1}


def item(review: dict[str, Any], *, kind: str = REVIEW, attempt: int = 1, reason: str | None = None) -> Item:
    origin = Origin(REVIEWS_CREATED, 2, 41, None, b"raw", (), T0)
    written = Item(kind=kind, record=review, origin=origin, attempt=attempt, not_before_ms=T0 + 3_000,
                   pane_start_ms=T0, retry_reason=reason)
    return read_item(write_item(written))  # as the topics carry it


def records_of(review: dict[str, Any]) -> dict[str, list[Seen]]:
    """A review retried once (an HTTP 500), enriched, alerted and counted in three windows;
    beside it another review and another restaurant's window, which the trace must leave out."""
    other = review_created("t", 2, restaurant_id="rest-9", occurred_at=T0 + 10)
    occurred = review["occurred_at"]
    return {
        REVIEWS_CREATED: [Seen(REVIEWS_CREATED, 2, 41, T0 + 5, review),
                          Seen(REVIEWS_CREATED, 1, 7, T0 + 12, other)],
        BY_RESTAURANT: [Seen(BY_RESTAURANT, 3, 100, T0 + 40, item(review)),
                        Seen(BY_RESTAURANT, 3, 130, T0 + 3_020, item(review, kind=RETRY, attempt=2)),
                        Seen(BY_RESTAURANT, 0, 9, T0 + 41, item(other))],
        RETRY_TOPIC: [Seen(RETRY_TOPIC, 3, 4, T0 + 900, item(review, kind=RETRY, attempt=2,
                                                              reason="HTTP 500 from the LLM"))],
        REVIEWS_ENRICHED: [Seen(REVIEWS_ENRICHED, 3, 55, T0 + 3_400, enriched(review)),
                           Seen(REVIEWS_ENRICHED, 0, 3, T0 + 60, enriched(other))],
        CRITICAL_ALERT: [Seen(CRITICAL_ALERT, 3, 8, T0 + 3_401,
                              {**enriched(review), "alert_id": f"crit:{review['event_id']}"})],
        AGGREGATES: [
            # closed before the answer went out: counted with the provisional label
            Seen(AGGREGATES, 3, 20, T0 + 2_500,
                 aggregate("rest-1", "HOPPING", occurred - 3_000, occurred + 2_000, closed=T0 + 2_490)),
            # closed after it: the final label
            Seen(AGGREGATES, 3, 21, T0 + 7_000, aggregate("rest-1", "TUMBLING", occurred, occurred + 5_000,
                                                          closed=T0 + 6_990)),
            Seen(AGGREGATES, 3, 22, T0 + 7_001, aggregate("rest-1", "TUMBLING", occurred + 5_000,
                                                          occurred + 10_000, closed=T0 + 12_000)),
            Seen(AGGREGATES, 0, 5, T0 + 7_002, aggregate("rest-9", "TUMBLING", occurred, occurred + 5_000,
                                                         closed=T0 + 6_990)),
        ],
        DLQ: [],
    }


@pytest.mark.parametrize("ids", [{"event_id": "evt-t-1"}, {"review_id": "rv-t-1"}, {"trace_id": "trc-t-1"}])
def test_any_id_finds_the_whole_timeline_in_time_order(ids: dict[str, str]) -> None:
    review = review_created("t", 1, restaurant_id="rest-1", occurred_at=T0)
    timeline = build(Wanted(**ids), records_of(review))
    assert (timeline.event_id, timeline.review_id, timeline.trace_id, timeline.restaurant_id) == (
        "evt-t-1", "rv-t-1", "trc-t-1", "rest-1")
    assert [(s.topic, s.what) for s in timeline.steps] == [
        (REVIEWS_CREATED, "created"),
        (BY_RESTAURANT, "decoded, to its restaurant's partition"),
        (RETRY_TOPIC, "retry: attempt 2 after HTTP 500 from the LLM"),
        (AGGREGATES, f"counted in the hopping window {iso_of(T0 - 3_000)} to {iso_of(T0 + 2_000)} "
                     "with its provisional label"),
        (BY_RESTAURANT, "retry back: attempt 2"),
        (REVIEWS_ENRICHED, "enriched ENRICHED: NEGATIVE by sim-1"),
        (CRITICAL_ALERT, "critical alert: rating 2, score -0.80"),
        (AGGREGATES, f"counted in the tumbling window {iso_of(T0)} to {iso_of(T0 + 5_000)} "
                     "with its final label"),
    ]
    rows = timeline.to_json()["steps"]
    assert rows[0]["gap_ms"] is None and [r["gap_ms"] for r in rows[1:3]] == [35, 860]
    lines = format_timeline(timeline)
    assert lines[0].startswith("review rv-t-1 event evt-t-1 trace trc-t-1 restaurant rest-1")
    assert "+0.035s" in lines[2] and f"{RETRY_TOPIC}[3]@4" in lines[3]


def test_a_dead_lettered_review_shows_its_letter_and_reason() -> None:
    review = review_created("d", 1, restaurant_id="rest-1", occurred_at=T0)
    letter = {"stage": "enrich", "reason": "llm_exhausted", "error_class": "RuntimeError", "attempts": 3,
              "topic": REVIEWS_CREATED, "partition": 2, "offset": 41, "trace_id": "trc-d-1",
              "original": review}
    records = {REVIEWS_CREATED: [Seen(REVIEWS_CREATED, 2, 41, T0, review)],
               DLQ: [Seen(DLQ, -1, -1, T0 + 9_000, letter)],
               REVIEWS_ENRICHED: [Seen(REVIEWS_ENRICHED, 1, 1, T0 + 9_001,
                                       enriched(review, status="FALLBACK"))]}
    timeline = build(Wanted(event_id="evt-d-1"), records)
    assert [s.what for s in timeline.steps] == ["created", "dead letter at enrich: llm_exhausted",
                                               "enriched FALLBACK: NEGATIVE by sim-1"]
    assert timeline.steps[1].details["from"] == f"{REVIEWS_CREATED}:2:41"
    assert f"{DLQ} " in format_timeline(timeline)[2]  # no partition and offset for a letter


def test_a_poison_input_is_found_by_its_trace_id_on_its_dead_letter() -> None:
    letter = {"stage": "decode", "reason": "invalid_value", "error_class": "Invalid", "attempts": 1,
              "topic": REVIEWS_CREATED, "partition": 0, "offset": 3, "trace_id": "trc-bad", "original": None}
    timeline = build(Wanted(trace_id="trc-bad"), {DLQ: [Seen(DLQ, -1, -1, T0, letter)]})
    assert [s.what for s in timeline.steps] == ["dead letter at decode: invalid_value"]


def test_no_id_is_a_usage_error_and_an_unknown_one_an_empty_timeline() -> None:
    with pytest.raises(ValueError, match="--event-id"):
        Wanted()
    review = review_created("t", 1, restaurant_id="rest-1", occurred_at=T0)
    assert build(Wanted(event_id="evt-nobody"), records_of(review)).steps == []


def test_a_range_without_ends_is_the_last_span_up_to_now_included() -> None:
    """The web timeline's default (issue 33.1): the CLI's last 24 h, or a narrower span."""
    assert time_range(None, None, now_ms=T0) == (T0 + 1 - DEFAULT_SPAN_MS, T0 + 1)
    assert time_range(None, None, now_ms=T0, span_ms=60_000) == (T0 + 1 - 60_000, T0 + 1)
    assert time_range(None, T0 - 5_000, now_ms=T0, span_ms=60_000) == (T0 - 65_000, T0 - 5_000)
    assert time_range(T0 - 10, None, now_ms=T0) == (T0 - 10, T0 + 1)
    assert time_range(T0 - 10, T0 - 5, now_ms=T0) == (T0 - 10, T0 - 5)


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=50)
def test_the_timeline_does_not_depend_on_the_order_records_are_read(seed: int) -> None:
    review = review_created("t", 1, restaurant_id="rest-1", occurred_at=T0)
    expected = build(Wanted(event_id="evt-t-1"), records_of(review)).steps
    shuffled = {topic: random.Random(seed).sample(rs, len(rs)) for topic, rs in records_of(review).items()}
    assert build(Wanted(event_id="evt-t-1"), dict(random.Random(seed).sample(
        list(shuffled.items()), len(shuffled)))).steps == expected


def iso_of(ms: int) -> str:
    from streams.trace import iso

    return iso(ms)
