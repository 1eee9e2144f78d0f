"""Micro benchmark of the pane value type: ns per add_review, merge, to_json and from_json.

Run: ``.venv/bin/python bench/bench_values.py [ops]`` (default 100,000 ops each). Asserts
nothing; the budget it informs is ~5,000 events/s per worker, i.e. 200 µs per event.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable

from tables.values import PaneAggregate

LABELS = ("POSITIVE", "NEUTRAL", "NEGATIVE", "CRITICAL")
CATEGORIES = ("delivery_time", "food_quality", "temperature", "packaging", "price", "service")


def reviews(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "rating": rng.randint(1, 5),
            "score": rng.uniform(-1, 1),
            "label": rng.choice(LABELS),
            "categories": rng.sample(CATEGORIES, rng.randint(0, 3)),
            "status": "ENRICHED",
            "cache_hit": rng.random() < 0.2,
            "tokens_in": rng.randrange(50, 400),
            "tokens_out": rng.randrange(10, 80),
            "cost_micro_usd": rng.randrange(5, 80),
            "processing_lag_ms": rng.randrange(200, 20_000),
        }
        for _ in range(n)
    ]


def typical_pane(seed: int) -> PaneAggregate:
    """A busy minute of one restaurant: 20 reviews, 10 orders."""
    agg = PaneAggregate()
    for r in reviews(20, seed):
        agg.add_review(**r)
    for d in range(10):
        agg.add_order(delay_ms=d * 90_000 - 200_000)
    agg.mark_applied(12_345_678)
    return agg


def timed(name: str, ops: int, fn: Callable[[], None]) -> None:
    start = time.perf_counter_ns()
    fn()
    elapsed = time.perf_counter_ns() - start
    print(f"{name:<28} {elapsed / ops:>9,.0f} ns/op   ({ops:,} ops)")


def main(ops: int = 100_000) -> None:
    batch = reviews(ops)
    agg = PaneAggregate()

    def add_all() -> None:
        add = agg.add_review
        for r in batch:
            add(**r)

    panes = [typical_pane(seed) for seed in range(64)]

    def merge_all() -> None:
        acc = PaneAggregate()
        for i in range(ops):
            acc.merge_from(panes[i & 63])

    def merge_new() -> None:
        a = panes[0]
        for i in range(ops):
            a.merge(panes[i & 63])

    def to_json() -> None:
        for i in range(ops):
            panes[i & 63].to_json()

    encoded = [p.to_json() for p in panes]

    def from_json() -> None:
        for i in range(ops):
            PaneAggregate.from_json(encoded[i & 63])

    timed("add_review", ops, add_all)
    timed("merge_from (in place)", ops, merge_all)
    timed("merge (new value)", ops, merge_new)
    timed("to_json", ops, to_json)
    timed("from_json", ops, from_json)
    size = sum(len(json.dumps(e, separators=(",", ":"))) for e in encoded) / len(encoded)
    print(f"typical pane (20 reviews, 10 orders): {size:,.0f} bytes of compact JSON")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
