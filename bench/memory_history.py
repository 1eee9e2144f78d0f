"""Bytes per restaurant of the web view's window history, before and after issue 30 (finding 9).

Before: 60 closed windows per restaurant kept as the dicts ``latest`` hands out. After: the
same windows as compact JSON in byte-bounded rings (tables.webdata.WindowHistory). Both are
measured with tracemalloc over 1,000 restaurants x 60 windows of a realistic aggregate, and
the after side also prints what its own estimate counts (what the bound is checked against).

    PYTHONPATH=$PWD python -m bench.memory_history
"""

from __future__ import annotations

import copy
import tracemalloc
from collections import OrderedDict, deque
from typing import Any

from tables.webdata import WindowHistory

RESTAURANTS = 1_000
WINDOWS = 60


def aggregate(restaurant_id: str, start_ms: int) -> dict[str, Any]:
    """A RestaurantWindowAggregate as the worker reads it from ``latest`` (JSON-decoded)."""
    hist = {"count": 12, "sum_ms": 48_211, "max_ms": 9_120,
            "bucket_counts": [0, 1, 2, 4, 3, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]}
    return {
        "aggregate_id": f"{restaurant_id}:TUMBLING:{start_ms}", "restaurant_id": restaurant_id,
        "window_kind": "TUMBLING", "window_start": start_ms, "window_end": start_ms + 60_000,
        "closed_at": start_ms + 70_512, "reviews": 12, "rating_sum": 41, "score_sum_milli": 2_350,
        "positive": 6, "neutral": 3, "negative": 2, "critical": 1, "llm_calls": 2, "tokens_in": 3_120,
        "tokens_out": 610, "cost_micro_usd": 834, "cache_hits": 1, "fallbacks": 0, "budget_skips": 0,
        "orders_delivered": 15, "late_events": 0, "provisional_labels": 0,
        "categories": {"food_quality": 5, "delivery_time": 4, "price": 1},
        "processing_lag": copy.deepcopy(hist), "event_age": copy.deepcopy(hist),
        "delivery_delay": copy.deepcopy(hist),
    }


def records() -> list[tuple[str, dict[str, Any]]]:
    return [(f"restaurant-{r:05d}", aggregate(f"restaurant-{r:05d}", w * 60_000))
            for w in range(WINDOWS) for r in range(RESTAURANTS)]


def before() -> int:
    """The old history: OrderedDict of deque(maxlen=60) of the record dicts."""
    feed = records()
    tracemalloc.start()
    history: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
    for restaurant_id, record in feed:
        ring = history.get(restaurant_id)
        if ring is None:
            ring = history[restaurant_id] = deque(maxlen=WINDOWS)
        ring.append(copy.deepcopy(record))  # each window its own dict, as read from the table
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held


def after() -> tuple[int, int]:
    feed = records()
    tracemalloc.start()
    history = WindowHistory(per_restaurant=WINDOWS, max_bytes=1 << 40)
    for restaurant_id, record in feed:
        history.observe(restaurant_id, record)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held, history.bytes


def main() -> None:
    old = before()
    new, counted = after()
    per = RESTAURANTS
    print(f"web history, {RESTAURANTS:,} restaurants x {WINDOWS} windows (tracemalloc):")
    rows = (("before (dicts)", old), ("after (compact JSON)", new), ("after, as counted", counted))
    for label, held in rows:
        print(f"  {label:<22} {held / per:>9,.0f} bytes per restaurant "
              f"({held / per / WINDOWS:,.0f} a window)")
    windows = 64 * 2**20 // (counted / per / WINDOWS)
    print(f"  5,000 restaurants x 60 windows: before {old * 5 / 2**30:.2f} GiB, "
          f"after {new * 5 / 2**30:.2f} GiB; the default bound (64 MiB) holds ~{windows:,.0f} windows")

if __name__ == "__main__":
    main()
