"""A review's state record: it never goes backwards, whatever order the stage's writes and
the owner's memory arrive in (replays, late answers, a second retry copy)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tables.review_states import FINAL, Entered, InFlight, ReviewState, advance, rank, view

DAY_MS = 86_400_000


def entered(state: ReviewState, at_ms: int, *, attempt: int = 1, event_id: str = "e1",
            **fields: Any) -> Entered:
    return Entered(restaurant_id="r1", review_id="rv1", event_id=event_id, trace_id="t1", state=state,
                   at_ms=at_ms, attempt=attempt, **fields)


steps = st.lists(st.tuples(st.sampled_from(list(ReviewState)), st.integers(1, 4)), min_size=1, max_size=12)


@given(steps)
def test_a_record_never_goes_backwards_and_its_first_final_state_stays(
        sequence: list[tuple[ReviewState, int]]) -> None:
    record: dict[str, Any] | None = None
    for at_ms, (state, attempt) in enumerate(sequence):
        before = record
        record = advance(record, entered(state, at_ms, attempt=attempt)) or record
        assert record is not None
        if before is not None:
            assert rank(record["state"]) >= rank(before["state"])
            if before["state"] in FINAL:
                assert record == before
            if record["state"] == before["state"] == ReviewState.PROCESSING:
                assert record["attempt"] >= before["attempt"]
        ranks = [rank(step["state"]) for step in record["history"]]
        assert ranks == sorted(ranks)


def test_a_later_state_keeps_the_provisional_label_it_does_not_know() -> None:
    pending = advance(None, entered(ReviewState.PENDING, 1, label="POSITIVE", score=0.5, provisional=True))
    retry = advance(pending, entered(ReviewState.PROCESSING, 2, attempt=2, reason="timeout"))
    assert retry is not None
    assert (retry["label"], retry["provisional"], retry["score"], retry["reason"]) == (
        "POSITIVE", True, 0.5, "timeout")
    assert retry["history"][-1] == {"state": "PROCESSING", "entered_at_ms": 2, "attempt": 2,
                                    "label": "POSITIVE", "provisional": True}


def test_a_new_event_of_the_same_review_starts_its_own_states() -> None:
    done = advance(None, entered(ReviewState.ENRICHED, 1, label="NEGATIVE"))
    again = advance(done, entered(ReviewState.PENDING, 5, event_id="e2", label="POSITIVE", provisional=True))
    assert again is not None
    assert (again["event_id"], again["state"], len(again["history"])) == ("e2", "PENDING", 1)


def test_the_owners_memory_reads_processing_over_pending_never_over_a_final_state() -> None:
    pending = advance(None, entered(ReviewState.PENDING, 1_000, label="POSITIVE", provisional=True))
    seen = view(pending, InFlight(attempt=1, since_ms=1_200), now_ms=2_000, ttl_ms=DAY_MS)
    assert seen is not None
    assert (seen["state"], seen["entered_at_ms"], seen["label"], seen["final"]) == (
        "PROCESSING", 1_200, "POSITIVE", False)
    assert "first_seen_ms" not in seen

    final = advance(pending, entered(ReviewState.FALLBACK, 3_000, label="NEUTRAL", reason="x" * 500))
    shown = view(final, InFlight(attempt=2, since_ms=3_500), now_ms=4_000, ttl_ms=DAY_MS)
    assert shown is not None
    assert (shown["state"], shown["final"], len(shown["reason"])) == ("FALLBACK", True, 200)


def test_a_record_older_than_its_ttl_is_unknown() -> None:
    record = advance(None, entered(ReviewState.PENDING, 1_000))
    assert view(record, None, now_ms=1_000 + DAY_MS, ttl_ms=DAY_MS) is not None
    assert view(record, None, now_ms=1_001 + DAY_MS, ttl_ms=DAY_MS) is None
    assert view(None, None, now_ms=0, ttl_ms=DAY_MS) is None
