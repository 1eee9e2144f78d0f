"""The web view's history and recent activity stay under their byte bounds (issue 30, finding 9).

The finding: 5,000 restaurants x 60 windows at ~4 KB each is ~1.15 GiB per worker. Here the
same mix goes through a bound of a few MiB: held under it, the oldest windows gone first, and
an evicted window never taken in again when the timer offers it once more.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tables.webdata import RecentActivity, WindowHistory

MIB = 1024 * 1024


def aggregate(restaurant_id: str, start_ms: int) -> dict[str, Any]:
    """A RestaurantWindowAggregate-shaped record of the size the worker sees (~1.3 KB as JSON)."""
    hist = {"count": 3, "sum_ms": 1234, "max_ms": 900,
            "bucket_counts": [0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}
    return {
        "aggregate_id": f"{restaurant_id}:TUMBLING:{start_ms}", "restaurant_id": restaurant_id,
        "window_kind": "TUMBLING", "window_start": start_ms, "window_end": start_ms + 60_000,
        "closed_at": start_ms + 70_000, "reviews": 3, "rating_sum": 12, "score_sum_milli": 1500,
        "positive": 2, "neutral": 1, "negative": 0, "critical": 0, "llm_calls": 1, "tokens_in": 300,
        "tokens_out": 60, "cost_micro_usd": 81, "cache_hits": 0, "fallbacks": 0, "budget_skips": 0,
        "orders_delivered": 4, "late_events": 0, "provisional_labels": 0,
        "categories": {"food": 2, "delivery": 1}, "processing_lag": hist, "event_age": hist,
        "delivery_delay": hist,
    }


def test_the_findings_mix_is_held_under_the_bound_oldest_windows_first() -> None:
    bound = 16 * MIB  # the mix would take ~0.5 GiB as JSON, ~1.15 GiB as dicts
    history = WindowHistory(per_restaurant=60, max_bytes=bound)
    restaurants = [f"restaurant-{i:05d}" for i in range(5_000)]
    for window in range(60):  # the timer: every restaurant's latest window, each minute
        for r in restaurants:
            history.observe(r, aggregate(r, window * 60_000))
            history.observe(r, aggregate(r, window * 60_000))  # offered again: taken once
        assert history.bytes <= bound
    assert history.evicted > 0
    floor = history._rings.evicted_tag
    assert floor is not None
    for r in restaurants:  # each keeps a run of its newest windows, none older than one evicted
        starts = [w["window_start"] for w in history.windows(r)]
        assert starts and starts[-1] == 59 * 60_000 and min(starts) >= floor
        assert starts == list(range(starts[0], 60 * 60_000, 60_000))
    assert history.evicted + len(history) <= 5_000 * 60


def test_an_evicted_window_offered_again_is_not_taken_back() -> None:
    history = WindowHistory(per_restaurant=60, max_bytes=64 * 1024)
    for i in range(200):
        history.observe(f"r{i}", aggregate(f"r{i}", 0))
    evicted = history.evicted
    assert evicted > 0
    for i in range(200):  # the timer offers every latest window again
        history.observe(f"r{i}", aggregate(f"r{i}", 0))
    assert history.evicted == evicted  # no churn: nothing came back to push another out
    history.observe("r0", aggregate("r0", 60_000))  # a newer window is always taken
    assert history.windows("r0")[-1]["window_start"] == 60_000


@given(texts=st.lists(st.text(min_size=0, max_size=5_000), min_size=1, max_size=60),
       restaurants=st.integers(1, 20))
@settings(max_examples=50, deadline=None)
def test_recent_critical_reviews_and_alerts_stay_under_their_bound(texts: list[str],
                                                                    restaurants: int) -> None:
    recent = RecentActivity(per_restaurant=20, max_bytes=128 * 1024)
    for i, text in enumerate(texts):
        rid = f"r{i % restaurants}"
        recent.remember_critical({"restaurant_id": rid, "event_id": f"e{i}", "text": text})
        recent.remember_alert({"restaurant_id": rid, "alert_id": f"a{i}", "rule": "processing_lag",
                               "severity": "WARNING", "message": text[:200], "window_end": i,
                               "emitted_at": i})
        assert recent.bytes <= 128 * 1024
    last = f"r{(len(texts) - 1) % restaurants}"
    assert recent.critical(last)[0]["event_id"] == f"e{len(texts) - 1}"  # newest first, never evicted
    held = sum(len(recent.critical(f"r{k}")) for k in range(restaurants))
    dropped_by_count = sum(max(0, len(range(k, len(texts), restaurants)) - 20)
                           for k in range(restaurants))
    assert held + recent._critical.evicted + dropped_by_count == len(texts)


def test_what_the_history_counts_is_not_below_what_python_allocates() -> None:
    """The bound is checked against the counted bytes: they must cover the real ones
    (orjson's own output keeps a 4-8 KiB buffer per record: the history copies it out)."""
    import tracemalloc

    records = [(f"restaurant-{i % 500:05d}", aggregate(f"restaurant-{i % 500:05d}", (i // 500) * 60_000))
               for i in range(10_000)]
    history = WindowHistory(per_restaurant=60, max_bytes=1 << 40)
    tracemalloc.start()
    for restaurant_id, record in records:
        history.observe(restaurant_id, record)
    allocated, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert allocated <= history.bytes <= 2 * allocated, (allocated, history.bytes)
