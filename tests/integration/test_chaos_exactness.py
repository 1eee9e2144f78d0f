"""Chaos (issue 12): exactly one correct final aggregate per window, whatever happens to workers.

Each test runs its own stack (it kills workers) and a ground truth produced by another
service: confluent-kafka's Producer and official AvroSerializer, reviews and orders at
wall-clock event time for 20 restaurants, counted by restaurant and 5 s tumbling window.

- Repeated kill -9 plus LLM faults: three kills within about 20 s while the simulator
  answers 10% HTTP 500, 5% HTTP 429 and 10% malformed (so reviews go through
  ``reviews.retry``): every window has one aggregate with the exact review and order
  counts, every review has a final ``reviews.enriched`` record; its repeats are printed.
- Two workers, one killed under load: the survivor takes the dead worker's partitions
  after the session timeout; every window is still exact and nothing is lost. Around the
  takeover Faust's fetch loop can drop records the survivor must handle: the consumer
  fetches them again (streams/faust_internals.py, point 5); the survivor's log says
  "missed offsets" when it did.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from streams.dev.reader import TopicReader
from streams.dev.stack import EMBEDDED_SESSION_TIMEOUT_S, Process, Stack
from tests.integration.conftest import NewStack, Producer, ms, tumbling_finals
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

WINDOW_MS = 5_000
RESTAURANTS = 20
BY_RESTAURANT = "reviewpulse-by-restaurant"
ENV = {
    "REVIEWPULSE_WINDOW_SIZE_S": "5",
    "REVIEWPULSE_HOPPING_SIZE_S": "20",
    "REVIEWPULSE_HOPPING_STEP_S": "5",
    "REVIEWPULSE_WINDOW_GRACE_S": "2",
    "REVIEWPULSE_WINDOW_CLOSE_INTERVAL_S": "0.5",
    "REVIEWPULSE_LLM_MAX_RETRIES": "0",  # each failed call goes through reviews.retry
    "REVIEWPULSE_LLM_RETRY_DELAY_S": "0.5",
    "REVIEWPULSE_LLM_TIMEOUT_S": "2",
    "REVIEWPULSE_LLM_BACKOFF_BASE_S": "0.05",
    "REVIEWPULSE_BREAKER_RESET_TIMEOUT_S": "2",
    # 6,000 reviews in 30 s spend more than the default 500,000 tokens a minute: without
    # this a fifth of them are BUDGET_SKIPPED and never meet the LLM faults.
    "REVIEWPULSE_TOKEN_BUDGET_PER_MINUTE": "5000000",
}
# The measured faults: enough 500s, 429s and malformed answers that some reviews
# exhaust the in-call retries and travel through reviews.retry. Seeded: a run repeats.
LLM_FAULTS = {"error_500_rate": 0.1, "rate_429_rate": 0.05, "malformed_rate": 0.1, "seed": 12}


def configure_llm(stack: Stack, **changes: Any) -> None:
    assert stack.llm is not None
    response = httpx.post(f"{stack.llm.url}/_sim/config", json=changes, timeout=5)
    assert response.status_code == 200, response.text


def owned_partitions(worker: Process) -> list[int]:
    """The by-restaurant partitions a worker owns now ([] while it joins or rebalances)."""
    try:
        response = httpx.get(f"{worker.url}/api/_local/owned", timeout=2)
    except httpx.HTTPError:
        return []
    return list(response.json()["partitions"]) if response.status_code == 200 else []


class Run:
    """The ground truth one test produced, and what the output topics say about it."""

    def __init__(self, stack: Stack, tag: str) -> None:
        assert stack.broker and stack.registry
        self.tag = f"{tag}{uuid.uuid4().hex[:4]}"
        self.service = Producer(stack)
        self.restaurants = [f"rest-{self.tag}-{i}" for i in range(RESTAURANTS)]
        self.reviews: dict[str, dict[str, Any]] = {}
        self.truth_reviews: Counter[tuple[str, int]] = Counter()
        self.truth_orders: Counter[tuple[str, int]] = Counter()
        self.order_windows: dict[str, tuple[str, int]] = {}  # order event id -> its window
        self.reader = TopicReader(stack.broker.bootstrap, registry_url=stack.registry.url)
        self.bootstrap, self.partitions = stack.broker.bootstrap, stack.partitions
        self.registry_url = stack.registry.url
        self.enriched: dict[str, list[dict[str, Any]]] = {}
        self.aggregates: list[dict[str, Any]] = []
        self.started_ms = 0
        self.produced_until_ms = 0

    def close(self) -> None:
        self.reader.close()
        self.service.close()

    def produce(self, *, seconds: float, reviews_per_s: int, orders_every: int = 7) -> None:
        """Reviews at ``reviews_per_s`` and an order every ``orders_every`` reviews, paced.

        ``orders_every`` is coprime with the 20 restaurants, so every restaurant gets orders."""
        from confluent_kafka.serialization import MessageField, SerializationContext

        producer = self.service.producer
        order_ctx = SerializationContext("orders.delivered", MessageField.VALUE)
        started, n = time.monotonic(), 0
        self.started_ms = int(time.time() * 1000)
        while (elapsed := time.monotonic() - started) < seconds:
            while n < int(elapsed * reviews_per_s):
                restaurant = self.restaurants[n % len(self.restaurants)]
                now = int(time.time() * 1000)
                window = (restaurant, now - now % WINDOW_MS)
                review = {
                    "event_id": f"evt-{self.tag}-{n}", "event_version": 1, "occurred_at": now,
                    "entity": {"review_id": f"rv-{self.tag}-{n}", "order_id": None, "user_id": "u",
                               "restaurant_id": restaurant, "rating": 1 + n % 5,
                               "text": f"Pedido {n} {self.tag}: " + ("ótimo" if n % 2 else "frio e atrasado"),
                               "language": "pt-BR"},
                    "metadata": {"source": "test", "trace_id": f"trc-{self.tag}-{n}", "retries": 0},
                }
                producer.produce("reviews.created", key=review["event_id"].encode(),
                                 value=self.service.review_bytes(review))
                self.reviews[review["event_id"]] = review
                self.truth_reviews[window] += 1
                if n % orders_every == 0:
                    order = {"event_id": f"evo-{self.tag}-{n}", "occurred_at": now,
                             "order_id": f"o-{self.tag}-{n}",
                             "restaurant_id": restaurant, "promised_at": now - 60_000, "delivered_at": now,
                             "metadata": {"source": "test", "trace_id": f"tro-{self.tag}-{n}", "retries": 0}}
                    producer.produce("orders.delivered", key=order["order_id"].encode(),
                                     value=self.service.order_serializer(order, order_ctx))
                    self.truth_orders[window] += 1
                    self.order_windows[order["event_id"]] = window
                n += 1
            producer.poll(0)
            time.sleep(0.01)  # pacing the producer, not waiting for the system under test
        assert producer.flush(30) == 0, "the ground truth was not all acknowledged"
        self.produced_until_ms = int(time.time() * 1000)

    def read(self) -> Run:
        mine = set(self.restaurants)
        for record in self.reader.read_new("reviews.enriched", "restaurants.aggregates"):
            value = record.value
            if record.topic == "reviews.enriched" and value["restaurant_id"] in mine:
                self.enriched.setdefault(value["event_id"], []).append(value)
            elif record.topic == "restaurants.aggregates" and value["restaurant_id"] in mine:
                self.aggregates.append(value)
        return self

    def tumbling(self) -> dict[tuple[str, int], list[dict[str, Any]]]:
        return tumbling_finals(self.aggregates)

    def outstanding(self) -> tuple[int, int]:
        """(reviews without an enriched record, windows of the truth without their aggregate)."""
        self.read()
        unclosed = set(self.truth_reviews) - set(self.tumbling())
        return len(set(self.reviews) - set(self.enriched)), len(unclosed)

    def wait_final(self, *, timeout_s: float, since_ms: int, context: str = "") -> None:
        """Until every review is enriched and every window has an aggregate; else say which not."""
        try:
            until(self.outstanding, timeout_s=timeout_s, what="every review enriched and every window final",
                  done=lambda left: left == (0, 0))
        except AssertionError as exc:
            missing = sorted(set(self.truth_reviews) - set(self.tumbling()), key=lambda k: (k[1], k[0]))
            shown = [f"{r} {(w - since_ms) / 1000:+.1f}s" for r, w in missing[:10]]
            wrong = "\n".join(self.wrong_windows(since_ms=since_ms))
            raise AssertionError(f"{exc}; {context}; windows without aggregate (start relative to "
                                 f"the kill): {shown}; {self.locate_missing()}; "
                                 f"wrong so far:\n{wrong}") from None

    def trace_orders(self, windows: list[tuple[str, int]]) -> str:
        """For windows whose order count is wrong: where each of their orders went on the
        by-restaurant topic, and the watermark the ticks around it carried (relative to the
        window's end + grace), so a lost order and an order closed out early look different."""
        from streams.protocol import ORDER, TICK, kind_of, read_item, read_tick

        wanted = {e: w for e, w in self.order_windows.items() if w in windows}
        lines: list[str] = []
        with TopicReader(self.bootstrap) as raw:
            records = raw.read_new(BY_RESTAURANT)
        for event_id, (restaurant, start) in sorted(wanted.items(), key=lambda kv: kv[0]):
            due = start + WINDOW_MS + 2_000
            copies = [r for r in records
                      if kind_of(r.value) == ORDER and read_item(r.value).event_id == event_id]
            where = []
            for copy in copies:
                ticks = [r for r in records if r.partition == copy.partition and kind_of(r.value) == TICK
                         and r.offset < copy.offset]
                before = min(read_tick(ticks[-1].value).marks.values()) - due if ticks else None
                where.append(f"p{copy.partition}@{copy.offset} (last tick before it: min mark "
                             f"{before} ms after end+grace)")
            lines.append(f"{event_id} {restaurant} window {start}: {where or 'NOT on by-restaurant'}")
        return "\n".join(lines)

    def locate_missing(self) -> str:
        """Where the reviews without an enriched record are: by-restaurant offsets and commits."""
        from confluent_kafka import Consumer, TopicPartition

        from streams.protocol import REVIEW, kind_of, read_item

        missing = set(self.reviews) - set(self.enriched)
        found: dict[int, list[int]] = {}
        with TopicReader(self.bootstrap) as raw:
            for record in raw.read_new(BY_RESTAURANT):
                if kind_of(record.value) == REVIEW and read_item(record.value).event_id in missing:
                    found.setdefault(record.partition, []).append(record.offset)
        group = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "reviewpulse"})
        try:
            commits = {tp.partition: tp.offset for tp in group.committed(
                [TopicPartition(BY_RESTAURANT, p) for p in range(self.partitions)], timeout=10)}
        finally:
            group.close()
        where = {p: (len(o), min(o), max(o)) for p, o in sorted(found.items())}
        return (f"{len(missing)} reviews not enriched; on {BY_RESTAURANT} by partition (count, first, "
                f"last offset): {where}; committed offsets there: {commits}")

    @contextlib.contextmanager
    def traffic(self, *, seconds: float, reviews_per_s: int) -> Iterator[threading.Thread]:
        """:meth:`produce` in a thread while the body runs; joined and closed whatever happens.
        The body joins it itself (and asserts it ended) before it waits for the outputs."""
        thread = threading.Thread(target=self.produce,
                                  kwargs={"seconds": seconds, "reviews_per_s": reviews_per_s})
        thread.start()
        try:
            yield thread
        finally:
            thread.join(timeout=120)
            self.close()

    def finish(self, producing: threading.Thread, *, timeout_s: float, since_ms: int,
               context: str = "") -> None:
        """The run's traffic has ended (it must, within a minute), then :meth:`wait_final`."""
        producing.join(timeout=60)
        assert not producing.is_alive(), "the ground truth's producer did not finish"
        self.wait_final(timeout_s=timeout_s, since_ms=since_ms, context=context)

    def assert_reconciled(self) -> dict[str, Any]:
        """``reviewpulse reconcile --json`` over the run's event time, as an operator runs it:
        it exits 0 and accounts for every review as enriched (the run must be alone on its
        stack in that time range). Returns the per-topic report."""
        import json

        from click.testing import CliRunner

        from streams.cli import main

        env = {"REVIEWPULSE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
               "REVIEWPULSE_SCHEMA_REGISTRY_URL": self.registry_url}
        args = ["reconcile", "--from", str(self.started_ms), "--to", str(self.produced_until_ms + 1),
                "--json"]
        result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
        print(f"$ reviewpulse {' '.join(args)}\n{result.output}")
        assert result.exit_code == 0, result.output
        topics = json.loads(result.output)["topics"]
        reviews = topics["reviews.created"]
        assert (reviews["consumed"], reviews["enriched"], reviews["missing"]) == (
            len(self.reviews), len(self.reviews), []), result.output
        return topics

    def enriched_repeats(self) -> int:
        return sum(len(v) - 1 for v in self.enriched.values())

    def assert_exact(self, *, since_ms: int, context: str = "") -> None:
        """One final aggregate per window of the truth, with its exact counts; every review enriched."""
        repeated = {k: len(v) for k, v in self.tumbling().items() if k in self.truth_reviews and len(v) > 1}
        assert not repeated, f"windows with more than one final aggregate: {repeated}"
        wrong = self.wrong_windows(since_ms=since_ms)
        assert not wrong, (f"{len(wrong)} of {len(self.truth_reviews)} windows wrong (times relative to "
                           f"{since_ms}){context}:\n" + "\n".join(wrong))
        assert set(self.enriched) == set(self.reviews)

    def wrong_windows(self, *, since_ms: int) -> list[str]:
        """Every way a window of the truth differs from its aggregates, times relative to ``since_ms``."""
        tumbling, wrong = self.tumbling(), []
        for key in sorted(self.truth_reviews, key=lambda k: (k[1], k[0])):
            finals = tumbling.get(key, [])
            truth = (self.truth_reviews[key], self.truth_orders[key])
            got = [(a["reviews"], a["orders_delivered"]) for a in finals]
            if got != [truth]:
                closed = [f"{(ms(a['closed_at']) - since_ms) / 1000:+.1f}s" for a in finals]
                late = [a["late_events"] for a in finals]
                wrong.append(f"{key[0]} window {(key[1] - since_ms) / 1000:+.1f}s: (reviews, orders) "
                             f"got {got} truth {truth}, closed at {closed}, late_events {late}")
        return wrong


def own_stack(new_stack: NewStack, name: str) -> Iterator[Stack]:
    """A module's own stack (its tests kill workers): ``yield from own_stack(new_stack, name)``."""
    stack = new_stack(name, partitions=4).start(llm_args=["--latency-ms", "5"])
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def kills_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "chaos-repeated-kills")


@pytest.fixture(scope="module")
def pair_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "chaos-two-workers")


def test_repeated_kill_9_with_llm_faults_keeps_every_window_exact_and_every_review_enriched(
        kills_stack, tmp_path):
    stack = kills_stack
    configure_llm(stack, **LLM_FAULTS)
    data_dir = tmp_path / "worker"
    worker = stack.add_worker(data_dir=data_dir, extra_env=ENV, name="kills-0")
    worker.wait_ready()
    run = Run(stack, "kills")
    producing = threading.Thread(target=run.produce, kwargs={"seconds": 30, "reviews_per_s": 200})
    producing.start()
    kills: list[float] = []
    try:
        # Three kills within about 20 s: the first once windows of the run have closed, the
        # second as soon as the restarted worker answers /health (joining, restoring), the
        # third once the next one is ready (joined, tables restored) and catching up.
        until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows of the run closed")
        for i in range(1, 4):
            if i == 3:
                worker.wait_ready()
            kills.append(time.time())
            worker.stop(kill=True)
            stack.workers.remove(worker)
            worker = stack.add_worker(data_dir=data_dir, extra_env=ENV, name=f"kills-{i}")
        producing.join(timeout=60)
        assert not producing.is_alive()
        run.wait_final(timeout_s=90, since_ms=int(kills[0] * 1000))
    finally:
        producing.join(timeout=60)
        configure_llm(stack, error_500_rate=0.0, rate_429_rate=0.0, malformed_rate=0.0)
        run.close()

    start = run.started_ms
    at = ", ".join(f"{(k * 1000 - start) / 1000:.1f}" for k in kills)
    statuses = Counter(v[-1]["status"] for v in run.enriched.values())
    retried = sum(1 for v in run.enriched.values() if max(e["attempts"] for e in v) > 1)
    print(f"\n{len(run.reviews)} reviews, {sum(run.truth_orders.values())} orders, "
          f"{len(run.truth_reviews)} windows; kill -9 at {at} s of the run "
          f"({kills[-1] - kills[0]:.1f} s from first to last); reviews.enriched records "
          f"{sum(len(v) for v in run.enriched.values())}, repeated {run.enriched_repeats()}; "
          f"final status {dict(statuses)}; {retried} reviews enriched after more than one attempt")

    repeated = {k: len(v) for k, v in run.tumbling().items() if k in run.truth_reviews and len(v) > 1}
    assert not repeated, f"windows with more than one final aggregate: {repeated}"
    wrong = run.wrong_windows(since_ms=int(kills[0] * 1000))
    assert not wrong, f"{len(wrong)} of {len(run.truth_reviews)} windows wrong:\n" + "\n".join(wrong)
    assert set(run.enriched) == set(run.reviews)
    assert retried > 0, "no review went through reviews.retry: the LLM faults did not bite"


def test_two_workers_one_killed_under_load_keeps_every_window_exact(pair_stack, tmp_path):
    stack = pair_stack
    survivor = stack.add_worker(data_dir=tmp_path / "survivor", extra_env=ENV, name="pair-survivor")
    victim = stack.add_worker(data_dir=tmp_path / "victim", extra_env=ENV, name="pair-victim")
    # Both own by-restaurant partitions before the traffic (the group has settled on two members).
    until(lambda: (owned_partitions(survivor), owned_partitions(victim)), timeout_s=60,
          what="both workers own partitions", done=lambda p: bool(p[0] and p[1]))
    run = Run(stack, "pair")
    producing = threading.Thread(target=run.produce, kwargs={"seconds": 30, "reviews_per_s": 150})
    producing.start()
    try:
        until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows of the run closed")
        victim_partitions = owned_partitions(victim)
        killed = time.time()
        victim.stop(kill=True)
        stack.workers.remove(victim)
        taken = until(lambda: owned_partitions(survivor), timeout_s=EMBEDDED_SESSION_TIMEOUT_S + 40,
                      what="the survivor owns every partition", interval_s=0.2,
                      done=lambda p: len(p) == stack.partitions)
        took_over_s = time.time() - killed
        producing.join(timeout=60)
        assert not producing.is_alive()
        run.wait_final(timeout_s=90, since_ms=int(killed * 1000),
                       context=f"victim owned {victim_partitions}, killed "
                               f"{(killed * 1000 - run.started_ms) / 1000:.1f} s into the run, "
                               f"survivor owned {taken} {took_over_s:.1f} s after the kill")
    finally:
        producing.join(timeout=60)
        run.close()

    start = run.started_ms
    print(f"\n{len(run.reviews)} reviews, {sum(run.truth_orders.values())} orders, "
          f"{len(run.truth_reviews)} windows; victim owned {victim_partitions}, killed at "
          f"{(killed * 1000 - start) / 1000:.1f} s of the run; survivor owned {taken} "
          f"{took_over_s:.1f} s after the kill; reviews.enriched repeated {run.enriched_repeats()}; "
          f"partitions fetched again after a stream missed offsets: "
          f"{survivor.log_path.read_text(errors='replace').count('missed offsets')}")

    repeated = {k: len(v) for k, v in run.tumbling().items() if k in run.truth_reviews and len(v) > 1}
    assert not repeated, f"windows with more than one final aggregate: {repeated}"
    wrong = run.wrong_windows(since_ms=int(killed * 1000))
    orders_off = [k for k in run.truth_reviews if [a["orders_delivered"] for a in run.tumbling().get(k, [])]
                  != [run.truth_orders[k]]]
    assert not wrong, (f"{len(wrong)} of {len(run.truth_reviews)} windows wrong (times relative to the "
                       f"kill; survivor owned every partition {took_over_s:.1f} s after it):\n"
                       + "\n".join(wrong) + "\n" + run.trace_orders(orders_off))
    assert set(run.enriched) == set(run.reviews)


@pytest.fixture(scope="module")
def kept_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "chaos-kept-then-moved")


def test_kill_9_with_the_data_dir_kept_then_partitions_moved_keeps_every_window_exact(kept_stack, tmp_path):
    """Issue 30, finding 3: RocksDB is written before the changelog is acknowledged, so after
    kill -9 the kept store could hold counts the changelog never got; they would be lost when
    the partition moves. The restarted worker wipes its stores and restores them instead."""
    stack = kept_stack
    kept = tmp_path / "kept"
    first = stack.add_worker(data_dir=kept, extra_env=ENV, name="kept-first")
    first.wait_ready()
    run = Run(stack, "kept")
    with run.traffic(seconds=30, reviews_per_s=150) as producing:
        until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows of the run closed")
        killed = time.time()
        first.stop(kill=True)
        stack.workers.remove(first)
        restarted = stack.add_worker(data_dir=kept, extra_env=ENV, name="kept-restarted")
        restarted.wait_ready()
        second = stack.add_worker(data_dir=tmp_path / "second", extra_env=ENV, name="kept-second")
        moved = until(lambda: owned_partitions(second), timeout_s=EMBEDDED_SESSION_TIMEOUT_S + 40,
                      what="partitions moved to the second worker", interval_s=0.2)
        run.finish(producing, timeout_s=90, since_ms=int(killed * 1000),
                   context=f"the second worker took {moved} from the restarted one")
    print(f"\n{len(run.reviews)} reviews, {len(run.truth_reviews)} windows; kill -9 at "
          f"{(killed * 1000 - run.started_ms) / 1000:.1f} s, restarted on its data dir, then "
          f"partitions {moved} moved to a second worker; reviews.enriched repeated {run.enriched_repeats()}")
    assert "table stores wiped" in restarted.log_path.read_text(errors="replace")
    run.assert_exact(since_ms=int(killed * 1000))
