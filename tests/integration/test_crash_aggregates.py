"""kill -9 the worker mid-stream, restart it: exactly one final aggregate per window, right totals.

Tansu has no transactions, so this is at-least-once plus idempotence: panes carry the
highest input offset folded in, the closed-window record is changelogged, and outputs are
acknowledged before state is written. The test runs its own stack so the kill disturbs
no other test.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from streams.dev.reader import TopicReader
from streams.dev.sample import SampleStats, produce_sample
from streams.dev.stack import Stack
from tests.integration.conftest import SMALL_WINDOWS, NewStack
from tests.integration.ground_truth import own_stack
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

WINDOW_MS = 5_000
ENV = SMALL_WINDOWS


@pytest.fixture(scope="module")
def crash_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "crash-aggregates")


def window_of(ms: int) -> int:
    return ms - ms % WINDOW_MS


def test_kill_9_mid_stream_keeps_exactly_one_correct_aggregate_per_window(crash_stack, tmp_path):
    stack = crash_stack
    assert stack.broker and stack.registry
    data_dir = tmp_path / "worker"
    first = stack.add_worker(data_dir=data_dir, extra_env=ENV)
    reader = TopicReader(stack.broker.bootstrap, registry_url=stack.registry.url)
    aggregates: list[dict[str, Any]] = []

    def some_closed() -> int:
        aggregates.extend(r.value for r in reader.read_new("restaurants.aggregates"))
        return len(aggregates)

    # Traffic starts once the pipeline has a watermark (a warm-up window closed): before the
    # first tick nothing can be judged late, like Kafka Streams' stream time at start-up.
    warm_up = produce_sample(bootstrap_servers=stack.broker.bootstrap, registry_url=stack.registry.url,
                             count=1, rate_per_s=100, restaurants=1, poison_every=0, late_share=0,
                             duplicate_share=0, orders_share=0, seed=1)
    until(some_closed, timeout_s=60, what="warm-up window closed")
    warm = len(aggregates)
    stats: dict[str, SampleStats] = {}

    def produce() -> None:
        stats["s"] = produce_sample(
            bootstrap_servers=stack.broker.bootstrap, registry_url=stack.registry.url,
            count=3_000, rate_per_s=150, restaurants=30, poison_every=0, seed=11,
            duplicate_share=0.03, late_share=0.01)

    thread = threading.Thread(target=produce)
    thread.start()
    # Kill once the worker has closed some windows and is mid-stream.
    until(some_closed, timeout_s=60, what="first aggregates before the kill", done=lambda n: n > warm)
    first.stop(kill=True)
    stack.workers.remove(first)
    stack.add_worker(data_dir=data_dir, extra_env=ENV, name="worker-restarted")
    thread.join(timeout=120)
    sample = stats["s"]
    sample.event_ids |= warm_up.event_ids

    enriched: dict[str, dict[str, Any]] = {}
    enriched_count: Counter[str] = Counter()

    def key_of(record: dict[str, Any], field: str) -> tuple[str, int]:
        return record["restaurant_id"], window_of(int(record[field].timestamp() * 1000))

    def caught_up() -> tuple[int, int]:
        """(reviews not enriched yet, windows of enriched reviews without their aggregate)."""
        for record in reader.read_new("reviews.enriched", "restaurants.aggregates"):
            if record.topic == "reviews.enriched":
                enriched[record.value["event_id"]] = record.value
                enriched_count[record.value["event_id"]] += 1
            else:
                aggregates.append(record.value)
        closed = {key_of(a, "window_start") for a in aggregates if a["window_kind"] == "TUMBLING"}
        expected = {key_of(e, "occurred_at") for i, e in enriched.items() if i not in sample.late_ids}
        return len(sample.event_ids - set(enriched)), len(expected - closed)

    until(caught_up, timeout_s=90, what="every review enriched and every window closed",
          done=lambda r: r == (0, 0))
    reader.close()

    duplicates = sum(n - 1 for n in enriched_count.values())
    print(f"\nproduced {len(sample.event_ids)} distinct reviews ({sample.duplicates} resent), "
          f"enriched records {sum(enriched_count.values())}, duplicate enriched after kill -9: {duplicates}")

    tumbling = [a for a in aggregates if a["window_kind"] == "TUMBLING"]
    keys = Counter((a["restaurant_id"], int(a["window_start"].timestamp() * 1000)) for a in tumbling)
    repeated = {k: n for k, n in keys.items() if n > 1}
    closed_at = {k: [a["closed_at"].strftime("%H:%M:%S.%f") for a in tumbling
                     if (a["restaurant_id"], int(a["window_start"].timestamp() * 1000)) == k]
                 for k in list(repeated)[:3]}
    assert not repeated, f"windows with more than one final aggregate: {repeated}; closed at {closed_at}"

    truth: Counter[tuple[str, int]] = Counter()
    ratings: Counter[tuple[str, int]] = Counter()
    for event_id, record in enriched.items():
        if event_id in sample.late_ids:
            continue
        key = (record["restaurant_id"], window_of(int(record["occurred_at"].timestamp() * 1000)))
        truth[key] += 1
        ratings[key] += record["rating"]
    got = {k: a for a in tumbling
           if (k := (a["restaurant_id"], int(a["window_start"].timestamp() * 1000)))}
    mismatched = {k: (got.get(k, {}).get("reviews"), n) for k, n in truth.items()
                  if got.get(k, {}).get("reviews") != n}
    late = sum(a["late_events"] for a in tumbling)
    by_window = Counter(k[1] for k in mismatched)
    missing = sum(n - (got.get(k, {}).get("reviews") or 0) for k, n in truth.items())
    assert not mismatched, (f"{len(mismatched)} windows wrong (by window start: {dict(by_window)}), "
                            f"{missing} reviews short, late counted {late} vs {len(sample.late_ids)}")
    assert all(got[k]["rating_sum"] == ratings[k] for k in truth)
    assert late == len(sample.late_ids), (late, len(sample.late_ids))
