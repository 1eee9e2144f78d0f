"""The LLM is an observer, never a bottleneck: windows close on time whatever the LLM does.

Own stack (the LLM simulator is made slow or broken here, and a worker is killed), with a
ground truth produced by the official confluent-kafka AvroSerializer: every review and
order of the run, by restaurant and 5 s tumbling window.

- LLM at 8 s per call (timeout 12 s): every tumbling window is final within a few seconds
  of end + grace with exact review and order counts, most reviews labelled provisionally;
  every review still reaches ``reviews.enriched``; once the LLM is fast again, new windows
  carry the LLM's labels (``provisional_labels`` 0).
- LLM down (every call HTTP 500): windows close on time with heuristic labels, every review
  is enriched as FALLBACK and dead-lettered ``llm_exhausted``, nothing is lost.
- kill -9 while LLM calls are in flight: after the restart nothing is lost and no window is
  double counted.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from streams.dev.reader import TopicReader
from streams.dev.stack import Process, Stack
from tests.integration.conftest import NewStack, Producer, ms, producer_for, tumbling_finals
from tests.until import until

pytestmark = [pytest.mark.integration]

WINDOW_MS = 5_000
GRACE_MS = 2_000
ON_TIME_MS = 5_000  # end + grace + this: ticks every 0.5 s, a batch, the produce (3.5 s seen in CI)
ENV = {
    "REVIEWPULSE_WINDOW_SIZE_S": "5",
    "REVIEWPULSE_HOPPING_SIZE_S": "20",
    "REVIEWPULSE_HOPPING_STEP_S": "5",
    "REVIEWPULSE_WINDOW_GRACE_S": "2",
    "REVIEWPULSE_WINDOW_CLOSE_INTERVAL_S": "0.5",
    "REVIEWPULSE_LLM_TIMEOUT_S": "12",
    "REVIEWPULSE_LLM_MAX_RETRIES": "1",
    "REVIEWPULSE_LLM_BACKOFF_BASE_S": "0.05",
    "REVIEWPULSE_LLM_RETRY_DELAY_S": "0.5",
    "REVIEWPULSE_BREAKER_RESET_TIMEOUT_S": "2",
}


@pytest.fixture(scope="module")
def slow_stack(new_stack: NewStack) -> Iterator[Stack]:
    stack = new_stack("llm-off-critical-path", partitions=4).start(
        llm_args=["--latency-ms", "8000"])
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def slow_worker(slow_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Process:
    return slow_stack.add_worker(data_dir=tmp_path_factory.mktemp("slow-worker"), extra_env=ENV)


@pytest.fixture(scope="module")
def service(slow_stack: Stack) -> Iterator[Producer]:
    yield from producer_for(slow_stack)


@pytest.fixture
def make_run(slow_stack: Stack, service: Producer) -> Iterator[Any]:
    """``make_run(tag)``: a Run whose reader is closed after the test."""
    runs: list[Run] = []

    def make(tag: str) -> Run:
        runs.append(Run(slow_stack, service, f"{tag}{uuid.uuid4().hex[:4]}"))
        return runs[-1]

    yield make
    for run in runs:
        run.reader.close()


def configure_llm(stack: Stack, **changes: Any) -> None:
    assert stack.llm is not None
    response = httpx.post(f"{stack.llm.url}/_sim/config", json=changes, timeout=5)
    assert response.status_code == 200, response.text


class Run:
    """What one test produced (the ground truth) and what the outputs say about it."""

    def __init__(self, stack: Stack, service: Producer, tag: str) -> None:
        assert stack.broker and stack.registry
        self.service = service
        self.tag = tag
        self.bootstrap = stack.broker.bootstrap
        self.restaurants = [f"rest-{tag}-{i}" for i in range(8)]
        self.reviews: dict[str, dict[str, Any]] = {}
        self.truth_reviews: Counter[tuple[str, int]] = Counter()
        self.truth_orders: Counter[tuple[str, int]] = Counter()
        self.reader = TopicReader(stack.broker.bootstrap, registry_url=stack.registry.url)
        self.enriched: dict[str, list[dict[str, Any]]] = {}
        self.aggregates: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []

    def produce(self, *, seconds: float, reviews_per_s: int, orders_per_s: int) -> None:
        """Reviews and orders at wall-clock event time, paced over ``seconds``."""
        from confluent_kafka.serialization import MessageField, SerializationContext

        producer, started, n = self.service, time.monotonic(), 0
        order_ctx = SerializationContext("orders.delivered", MessageField.VALUE)
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * reviews_per_s)
            while n < due:
                restaurant = self.restaurants[n % len(self.restaurants)]
                now = int(time.time() * 1000)
                review = {
                    "event_id": f"evt-{self.tag}-{n}", "event_version": 1, "occurred_at": now,
                    "entity": {"review_id": f"rv-{self.tag}-{n}", "order_id": None, "user_id": "u",
                               "restaurant_id": restaurant, "rating": 1 + n % 5,
                               "text": f"Pedido {n} {self.tag}: " + ("ótimo" if n % 2 else "frio e atrasado"),
                               "language": "pt-BR"},
                    "metadata": {"source": "test", "trace_id": f"trc-{self.tag}-{n}", "retries": 0},
                }
                producer.producer.produce("reviews.created", key=review["event_id"].encode(),
                                          value=producer.review_bytes(review))
                self.reviews[review["event_id"]] = review
                self.truth_reviews[(restaurant, now - now % WINDOW_MS)] += 1
                if orders_per_s and n % max(1, reviews_per_s // orders_per_s) == 0:
                    order = {"event_id": f"evo-{self.tag}-{n}", "occurred_at": now, "order_id": f"o-{n}",
                             "restaurant_id": restaurant, "promised_at": now - 60_000, "delivered_at": now,
                             "metadata": {"source": "test", "trace_id": f"tro-{self.tag}-{n}", "retries": 0}}
                    producer.producer.produce("orders.delivered", key=order["order_id"].encode(),
                                              value=producer.order_serializer(order, order_ctx))
                    self.truth_orders[(restaurant, now - now % WINDOW_MS)] += 1
                n += 1
            producer.producer.poll(0)
            time.sleep(0.01)  # pacing the producer, not waiting for the system under test
        producer.producer.flush(10)

    def read(self) -> Run:
        for record in self.reader.read_new("reviews.enriched", "restaurants.aggregates", "reviewpulse.dlq"):
            value = record.value
            if record.topic == "reviews.enriched" and value["event_id"] in self.reviews:
                self.enriched.setdefault(value["event_id"], []).append(value)
            elif record.topic == "restaurants.aggregates" and value["restaurant_id"] in self.restaurants:
                self.aggregates.append(value)
            elif record.topic == "reviewpulse.dlq" and value["trace_id"] and self.tag in value["trace_id"]:
                self.dead.append(value)
        return self

    def tumbling(self) -> dict[tuple[str, int], list[dict[str, Any]]]:
        return tumbling_finals(self.aggregates)

    def windows_final(self) -> int:
        """Windows of the truth without their aggregate yet."""
        return len(set(self.truth_reviews) - set(self.read().tumbling()))

    def trail(self, restaurant: str) -> str:
        """Where ``restaurant``'s records went on by-restaurant, and the windows it got: what a
        missing final aggregate needs to be explained."""
        from streams.protocol import TICK, kind_of, read_item

        with TopicReader(self.bootstrap) as raw:
            records = raw.read_new("reviewpulse-by-restaurant")
        items = [(r.partition, r.offset, kind_of(r.value), read_item(r.value))
                 for r in records if kind_of(r.value) not in (TICK, None)]
        mine = [(p, o, k, i.event_id, i.record.get("occurred_at")) for p, o, k, i in items
                if i.restaurant_id == restaurant]
        windows = sorted(ms(a["window_start"]) for a in self.aggregates if a["restaurant_id"] == restaurant)
        return (f"{restaurant} on by-restaurant (partition, offset, kind, id, occurred_at): {mine}; "
                f"its windows: {windows}")

    def not_enriched(self) -> int:
        return len(set(self.reviews) - set(self.read().enriched))

    def assert_exact(self) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """One final aggregate per window of the truth, with its exact review count."""
        tumbling = self.tumbling()
        repeated = {k: len(v) for k, v in tumbling.items() if len(v) > 1}
        assert not repeated, f"windows with more than one final aggregate: {repeated}"
        wrong = {k: (tumbling[k][0]["reviews"], n) for k, n in self.truth_reviews.items()
                 if tumbling[k][0]["reviews"] != n}
        assert not wrong, f"review counts (got, truth): {wrong}"
        return tumbling

    def assert_exact_and_on_time(self) -> list[dict[str, Any]]:
        tumbling = self.assert_exact()
        wrong_orders = {k: (got, self.truth_orders[k]) for k in self.truth_reviews
                        if (got := tumbling[k][0]["orders_delivered"]) != self.truth_orders[k]}
        assert not wrong_orders, f"order counts (got, truth): {wrong_orders}"
        finals = [tumbling[k][0] for k in self.truth_reviews]
        late = {k: ms(a["closed_at"]) - (k[1] + WINDOW_MS + GRACE_MS)
                for k, a in zip(self.truth_reviews, finals, strict=True)}
        behind = {k: d for k, d in late.items() if d > ON_TIME_MS}
        assert not behind, f"windows closed later than end + grace + {ON_TIME_MS} ms: {behind}"
        print(f"\n{self.tag}: {len(finals)} windows, closed {min(late.values())}..{max(late.values())} ms "
              f"after end + grace; provisional labels {sum(a['provisional_labels'] for a in finals)} "
              f"of {sum(a['reviews'] for a in finals)} reviews")
        return finals


def test_slow_llm_windows_close_on_time_with_exact_counts_and_every_review_is_enriched(
        slow_stack, slow_worker, make_run):
    run = make_run("slow")
    started = time.monotonic()
    run.produce(seconds=12, reviews_per_s=20, orders_per_s=5)
    until(run.windows_final, timeout_s=30, what="every window of the run final", done=lambda n: n == 0)
    finals = run.assert_exact_and_on_time()
    assert sum(a["provisional_labels"] for a in finals) > 0  # the LLM had not answered: nobody waited

    until(run.not_enriched, timeout_s=120, what="every review on reviews.enriched", done=lambda n: n == 0)
    enriched_s = time.monotonic() - started
    statuses = Counter(v[0]["status"] for v in run.enriched.values())
    repeats = sum(len(v) - 1 for v in run.enriched.values())
    print(f"{len(run.reviews)} reviews enriched in {enriched_s:.1f} s of run: {dict(statuses)}, "
          f"repeats {repeats}")
    assert statuses["ENRICHED"] == len(run.reviews)  # 8 s is slow, not failed: the LLM's labels
    assert repeats == 0

    configure_llm(slow_stack, latency_ms=5)
    fast = make_run("fast")
    fast.produce(seconds=6, reviews_per_s=20, orders_per_s=5)
    until(fast.windows_final, timeout_s=30, what="every window after the LLM recovered",
          done=lambda n: n == 0)
    finals = fast.assert_exact_and_on_time()
    assert sum(a["provisional_labels"] for a in finals) == 0
    assert sum(a["llm_calls"] + a["cache_hits"] for a in finals) == sum(a["reviews"] for a in finals)


def test_llm_down_windows_close_on_time_with_heuristic_labels_and_nothing_is_lost(
        slow_stack, slow_worker, make_run):
    configure_llm(slow_stack, latency_ms=5, error_500_rate=1.0)
    try:
        run = make_run("down")
        run.produce(seconds=8, reviews_per_s=20, orders_per_s=5)
        until(run.windows_final, timeout_s=30, what="every window of the run final", done=lambda n: n == 0)
        finals = run.assert_exact_and_on_time()
        assert sum(a["llm_calls"] for a in finals) == 0
        until(run.not_enriched, timeout_s=60, what="every review on reviews.enriched", done=lambda n: n == 0)
        until(lambda: len(run.read().dead), timeout_s=30, what="a dead letter per review",
              done=lambda n: n >= len(run.reviews))
    finally:
        configure_llm(slow_stack, error_500_rate=0.0)
    assert {v[0]["status"] for v in run.enriched.values()} == {"FALLBACK"}
    assert {d["reason"] for d in run.dead} == {"llm_exhausted"}
    assert {d["trace_id"] for d in run.dead} == {r["metadata"]["trace_id"] for r in run.reviews.values()}


@pytest.mark.chaos
def test_kill_9_with_llm_calls_in_flight_loses_nothing_and_counts_each_window_once(
        slow_stack, slow_worker, make_run, tmp_path):
    configure_llm(slow_stack, latency_ms=3000, error_500_rate=0.0)
    stack = slow_stack
    data_dir = tmp_path / "crash-worker"
    slow_worker.stop(kill=True)  # the module's worker goes: the new one owns every partition
    stack.workers.remove(slow_worker)
    first = stack.add_worker(data_dir=data_dir, extra_env=ENV, name="inflight-first")
    run = make_run("crash")
    run.produce(seconds=6, reviews_per_s=20, orders_per_s=5)
    # Mid-run: some windows closed, reviews still waiting for the 3 s LLM.
    until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows closed", done=lambda n: n > 0)
    killed_ms = int(time.time() * 1000)
    first.stop(kill=True)
    stack.workers.remove(first)
    stack.add_worker(data_dir=data_dir, extra_env=ENV, name="inflight-restarted")
    until(run.not_enriched, timeout_s=120, what="every review enriched after the restart",
          done=lambda n: n == 0)
    try:
        until(run.windows_final, timeout_s=60, what="every window final after the restart",
              done=lambda n: n == 0)
    except AssertionError as exc:
        missing = sorted(set(run.truth_reviews) - set(run.tumbling()))
        trail = run.trail(missing[0][0]) if missing else ""
        raise AssertionError(f"{exc}; missing {missing[:8]}; killed at {killed_ms}; {trail}") from None
    tumbling = run.assert_exact()
    repeats = sum(len(v) - 1 for v in run.enriched.values())
    print(f"\nkill -9 with LLM calls in flight: {len(run.reviews)} reviews, all enriched, "
          f"{len(tumbling)} windows exact, reviews.enriched repeats {repeats}")
