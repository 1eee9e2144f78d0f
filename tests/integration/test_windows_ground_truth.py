"""Final window aggregates equal a ground truth the test computes itself, field by field.

The dataset has duplicates, out-of-order events, an event late within grace, one late
beyond grace, delivered orders, an idle restaurant, and two restaurants on different
partitions. Event time is anchored to the wall clock (windows close by ticks), so the
test waits for wall-clock instants: that is the behaviour under test, not luck.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tests.integration.conftest import WORKER_ENV, unique
from tests.until import until

pytestmark = pytest.mark.integration

WINDOW_MS = int(WORKER_ENV["REVIEWPULSE_WINDOW_SIZE_S"]) * 1000
GRACE_MS = int(WORKER_ENV["REVIEWPULSE_WINDOW_GRACE_S"]) * 1000
TICK_MS = int(float(WORKER_ENV["REVIEWPULSE_WINDOW_CLOSE_INTERVAL_S"]) * 1000)


def now_ms() -> int:
    return int(time.time() * 1000)


def wait_for_wall(t_ms: int) -> None:
    until(now_ms, done=lambda n: n >= t_ms, timeout_s=(t_ms - now_ms()) / 1000 + 5,
          interval_s=0.02, what=f"wall clock {t_ms}")


def restaurants_on_distinct_partitions(count: int, partitions: int = 4) -> list[str]:
    """Ids the by-restaurant topic's partitioner (murmur2) puts on different partitions."""
    partitioner, chosen, used = DefaultPartitioner(), [], set()
    while len(chosen) < count:
        rid = unique("gt")
        partition = partitioner(rid.encode(), list(range(partitions)), list(range(partitions)))
        if partition not in used:
            used.add(partition)
            chosen.append(rid)
    return chosen


def ground_truth(enriched: dict[str, dict[str, Any]], orders: list[dict[str, Any]],
                 assignment: dict[str, int]) -> dict[tuple[str, int], dict[str, Any]]:
    """Expected aggregates by (restaurant, window start), computed without product code."""
    truth: dict[tuple[str, int], dict[str, Any]] = {}

    def window(rid: str, start: int) -> dict[str, Any]:
        return truth.setdefault((rid, start), {
            "reviews": 0, "rating_sum": 0, "score_sum_milli": 0, "positive": 0, "neutral": 0,
            "negative": 0, "critical": 0, "categories": Counter(), "cost_micro_usd": 0,
            "tokens_in": 0, "tokens_out": 0, "orders_delivered": 0, "delays": [], "late_events": 0,
        })

    for event_id, start in assignment.items():
        e = enriched[event_id]
        w = window(e["restaurant_id"], start)
        w["reviews"] += 1
        w["rating_sum"] += e["rating"]
        w["score_sum_milli"] += round(e["sentiment_score"] * 1000)
        w[e["sentiment"].lower()] += 1
        w["categories"].update(set(e["categories"]))
        w["cost_micro_usd"] += e["cost_micro_usd"]
        w["tokens_in"] += e["tokens_in"]
        w["tokens_out"] += e["tokens_out"]
    for order in orders:
        start = order["occurred_at"] - order["occurred_at"] % WINDOW_MS
        w = window(order["restaurant_id"], start)
        w["orders_delivered"] += 1
        w["delays"].append(max(0, order["delivered_at"] - order["promised_at"]))
    return truth


def test_final_aggregates_equal_ground_truth(worker, producer, review_factory, order_factory, reader):
    a, b, idle = restaurants_on_distinct_partitions(3)
    t0 = now_ms() + 1_000
    t0 += WINDOW_MS - t0 % WINDOW_MS  # start of the next tumbling window
    w0, w1 = t0, t0 + WINDOW_MS
    wait_for_wall(w0 + 200)

    sent: dict[str, dict[str, Any]] = {}
    expected_window: dict[str, int] = {}

    def review(rid: str, occurred: int, *, window_start: int | None, **fields: Any) -> dict[str, Any]:
        r = review_factory(restaurant_id=rid, occurred_at=occurred, **fields)
        producer.send_review(r)
        sent[r["event_id"]] = r
        if window_start is not None:
            expected_window[r["event_id"]] = window_start
        return r

    # In W0, out of order, with a duplicate and orders.
    review(a, w0 + 3_000, window_start=w0, rating=5, text="Excelente, chegou quente!")
    first = review(a, w0 + 1_000, window_start=w0, rating=1, text="Terrible, cold and late.")
    producer.send_review(first)  # at-least-once upstream: the same event again
    review(b, w0 + 4_000, window_start=w0, rating=2, text="A embalagem vazou.")
    review(b, w0 + 500, window_start=w0, rating=4, text="Good burger, a bit expensive.")
    review(idle, w0 + 600, window_start=w0, rating=3, text="Ok, nothing special.")
    orders = [order_factory(restaurant_id=a, occurred_at=w0 + 2_000, promised_at=w0 - 600_000,
                            delivered_at=w0 + 2_000),
              order_factory(restaurant_id=b, occurred_at=w0 + 2_500, promised_at=w0,
                            delivered_at=w0 - 60_000)]
    for order in orders:
        producer.send_order(order)

    # After W0's end but within grace: still counts in W0.
    wait_for_wall(w1 + 300)
    review(a, w0 + 4_500, window_start=w0, rating=4, text="Late but tasty.")
    review(a, w1 + 100, window_start=w1, rating=5, text="Perfect again.")
    review(b, w1 + 200, window_start=w1, rating=1, text="Found a hair in the food. Disgusting.")

    aggregates: list[dict[str, Any]] = []

    def a_w0_closed() -> bool:
        aggregates.extend(r.value for r in reader.read_new("restaurants.aggregates"))
        return any(x["restaurant_id"] == a and x["window_start"].timestamp() * 1000 == w0
                   for x in aggregates)

    until(a_w0_closed, timeout_s=WINDOW_MS / 1000 + 10, what="W0 of restaurant A closed")
    # Beyond grace: W0 is closed, so this counts as late in an open window, not in W0.
    late = review(a, w0 + 2_000, window_start=None, rating=2, text="Meh.")

    ours = {a, b, idle}

    def all_closed() -> bool:
        aggregates.extend(r.value for r in reader.read_new("restaurants.aggregates"))
        starts = {(x["restaurant_id"], x["window_start"].timestamp() * 1000) for x in aggregates
                  if x["window_kind"] == "TUMBLING"}
        late_seen = sum(x["late_events"] for x in aggregates
                        if x["restaurant_id"] == a and x["window_kind"] == "TUMBLING")
        return {(a, w0), (b, w0), (idle, w0), (a, w1), (b, w1)} <= starts and late_seen == 1

    until(all_closed, timeout_s=2 * WINDOW_MS / 1000 + 15, what="all windows closed")
    enriched = {r.value["event_id"]: r.value for r in reader.read_new("reviews.enriched")
                if r.value["restaurant_id"] in ours}
    assert set(enriched) == set(sent), "every distinct review is enriched once"
    tumbling = [x for x in aggregates if x["window_kind"] == "TUMBLING" and x["restaurant_id"] in ours]
    keys = Counter((x["restaurant_id"], int(x["window_start"].timestamp() * 1000)) for x in tumbling)
    assert all(n == 1 for n in keys.values()), f"exactly one final aggregate per window: {keys}"

    truth = ground_truth(enriched, orders, expected_window)
    by_key = {(x["restaurant_id"], int(x["window_start"].timestamp() * 1000)): x for x in tumbling}
    late_total = 0
    for key, got in by_key.items():
        want = truth.get(key, {"reviews": 0, "late_events": 0})
        late_total += got["late_events"]
        if not want["reviews"] and not want.get("orders_delivered"):
            assert got["reviews"] == 0 and got["late_events"] >= 1, key  # holds only the late one
            continue
        for name in ("reviews", "rating_sum", "score_sum_milli", "positive", "neutral", "negative",
                     "critical", "cost_micro_usd", "tokens_in", "tokens_out", "orders_delivered"):
            assert got[name] == want[name], (key, name, got[name], want[name])
        assert got["categories"] == dict(want["categories"]), key
        assert got["processing_lag"]["count"] == want["reviews"], key
        assert got["delivery_delay"]["count"] == len(want["delays"]), key
        if want["delays"]:
            assert got["delivery_delay"]["max_ms"] == max(want["delays"]), key
            assert got["delivery_delay"]["sum_ms"] == sum(want["delays"]), key
        assert got["sentiment_avg"] == pytest.approx(want["score_sum_milli"] / 1000 / want["reviews"])
    assert late_total == 1, "the event beyond grace is counted once, as late"
    assert late["event_id"] in enriched, "a late review is still enriched"

    idle_w0 = by_key[(idle, w0)]
    closed_after_end_ms = idle_w0["closed_at"].timestamp() * 1000 - (w0 + WINDOW_MS)
    # Closed by the wall clock although the restaurant went quiet: within grace plus one timer
    # interval (plus the time a tick takes through the broker and a batch).
    assert closed_after_end_ms <= GRACE_MS + TICK_MS + 1_500, closed_after_end_ms


def test_analytics_consumer_reads_aggregates_with_official_deserializer(worker, producer, reader,
                                                                         review_factory):
    """The official confluent-kafka AvroDeserializer (registry lookup by id) reads every field."""
    rid = unique("rest")
    producer.send_review(review_factory(restaurant_id=rid, rating=5, text="Ótimo!"))
    got: list[dict[str, Any]] = []

    def found() -> bool:
        got.extend(r.value for r in reader.read_new("restaurants.aggregates")
                   if r.value["restaurant_id"] == rid)
        return bool(got)

    until(found, timeout_s=WINDOW_MS / 1000 + 15, what="an aggregate for the restaurant")
    record = got[0]
    assert record["aggregate_id"].startswith(f"{rid}:")
    assert record["reviews"] == 1 and record["rating_sum"] == 5
    assert set(record["processing_lag"]) >= {"count", "p50_ms", "p95_ms", "p99_ms", "bucket_counts"}
