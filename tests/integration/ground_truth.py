"""The ground truth of a run, shared by the chaos, crash, fault and LLM tests.

Another service (confluent-kafka's Producer and official AvroSerializer) writes reviews
and orders at wall-clock event time for a set of restaurants; :class:`Run` counts them by
restaurant and 5 s tumbling window, reads what the pipeline wrote, and says exactly how
the outputs differ from the truth. :func:`own_stack` is the one embedded stack a module
starts for itself (its tests kill workers or reconfigure the LLM).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx

from streams.dev.reader import TopicReader
from streams.dev.stack import EMBEDDED_SESSION_TIMEOUT_S, Process, Stack
from tests.integration.conftest import SMALL_WINDOWS, NewStack, Producer, ms, tumbling_finals
from tests.records import order_delivered, review_created
from tests.until import until

WINDOW_MS = 5_000  # SMALL_WINDOWS
GRACE_MS = 2_000
ON_TIME_MS = 5_000  # end + grace + this: ticks every 0.5 s, a batch, the produce (3.5 s seen in CI)
RESTAURANTS = 20
BY_RESTAURANT = "reviewpulse-by-restaurant"
PANES_CHANGELOG = "reviewpulse-panes-changelog"
DLQ_TOPIC = "reviewpulse.dlq"
# The chaos tests' worker: small windows, LLM failures that travel through reviews.retry.
ENV = {
    **SMALL_WINDOWS,
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

    def __init__(self, stack: Stack, tag: str, *, restaurants: int = RESTAURANTS,
                 service: Producer | None = None) -> None:
        """``service``: a producer the caller owns (kept open by :meth:`close`); else the
        run makes its own."""
        assert stack.broker and stack.registry
        self.tag = f"{tag}{uuid.uuid4().hex[:4]}"
        self.service = service or Producer(stack)
        self._owns_service = service is None
        self.restaurants = [f"rest-{self.tag}-{i}" for i in range(restaurants)]
        self.reviews: dict[str, dict[str, Any]] = {}
        self.truth_reviews: Counter[tuple[str, int]] = Counter()
        self.truth_orders: Counter[tuple[str, int]] = Counter()
        self.order_windows: dict[str, tuple[str, int]] = {}  # order event id -> its window
        self.reader = TopicReader(stack.broker.bootstrap, registry_url=stack.registry.url)
        self.bootstrap, self.partitions = stack.broker.bootstrap, stack.partitions
        self.registry_url = stack.registry.url
        self.enriched: dict[str, list[dict[str, Any]]] = {}
        self.aggregates: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []  # dead letters of the run's records (by trace id)
        self.started_ms = 0
        self.produced_until_ms = 0

    def close(self) -> None:
        self.reader.close()
        if self._owns_service:
            self.service.close()

    def produce(self, *, seconds: float, reviews_per_s: int, orders_every: int = 7) -> None:
        """Reviews at ``reviews_per_s`` and an order every ``orders_every`` reviews, paced.

        With the default 20 restaurants, 7 is coprime: every restaurant gets orders."""
        from confluent_kafka.serialization import MessageField, SerializationContext

        producer = self.service.producer
        order_ctx = SerializationContext("orders.delivered", MessageField.VALUE)
        started, n = time.monotonic(), 0
        self.started_ms = int(time.time() * 1000)
        while (elapsed := time.monotonic() - started) < seconds:
            while n < int(elapsed * reviews_per_s):
                restaurant = self.restaurants[n % len(self.restaurants)]
                review = self.review(n, restaurant)
                now = review["occurred_at"]
                window = (restaurant, now - now % WINDOW_MS)
                producer.produce("reviews.created", key=review["event_id"].encode(),
                                 value=self.service.review_bytes(review))
                self.reviews[review["event_id"]] = review
                self.truth_reviews[window] += 1
                if n % orders_every == 0:
                    order = order_delivered(self.tag, n, restaurant_id=restaurant, occurred_at=now)
                    producer.produce("orders.delivered", key=order["order_id"].encode(),
                                     value=self.service.order_serializer(order, order_ctx))
                    self.truth_orders[window] += 1
                    self.order_windows[order["event_id"]] = window
                n += 1
            producer.poll(0)
            time.sleep(0.01)  # pacing the producer, not waiting for the system under test
        assert producer.flush(30) == 0, "the ground truth was not all acknowledged"
        self.produced_until_ms = int(time.time() * 1000)

    def review(self, n: int, restaurant: str) -> dict[str, Any]:
        """The run's ``n``-th review, now: an ordinary one (a subclass may make it another)."""
        return review_created(self.tag, n, restaurant_id=restaurant)

    def read(self) -> Run:
        mine = set(self.restaurants)
        for record in self.reader.read_new("reviews.enriched", "restaurants.aggregates", "reviewpulse.dlq"):
            value = record.value
            if record.topic == "reviews.enriched" and value["restaurant_id"] in mine:
                self.enriched.setdefault(value["event_id"], []).append(value)
            elif record.topic == "restaurants.aggregates" and value["restaurant_id"] in mine:
                self.aggregates.append(value)
            elif record.topic == "reviewpulse.dlq" and value["trace_id"] and self.tag in value["trace_id"]:
                self.dead.append(value)
        return self

    def tumbling(self) -> dict[tuple[str, int], list[dict[str, Any]]]:
        return tumbling_finals(self.aggregates)

    def windows_final(self) -> int:
        """Windows of the truth without their aggregate yet."""
        return len(set(self.truth_reviews) - set(self.read().tumbling()))

    def not_enriched(self) -> int:
        return len(set(self.reviews) - set(self.read().enriched))

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
        """Where the reviews without an enriched record are (:func:`locate_reviews`)."""
        return locate_reviews(self.bootstrap, self.registry_url, set(self.reviews) - set(self.enriched),
                              partitions=self.partitions)

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

    def trail(self, restaurant: str) -> str:
        """Where ``restaurant``'s records went on by-restaurant, and the windows it got: what a
        missing final aggregate needs to be explained."""
        from streams.protocol import TICK, kind_of, read_item

        with TopicReader(self.bootstrap) as raw:
            records = raw.read_new(BY_RESTAURANT)
        items = [(r.partition, r.offset, kind_of(r.value), read_item(r.value))
                 for r in records if kind_of(r.value) not in (TICK, None)]
        mine = [(p, o, k, i.event_id, i.record.get("occurred_at")) for p, o, k, i in items
                if i.restaurant_id == restaurant]
        windows = sorted(ms(a["window_start"]) for a in self.aggregates if a["restaurant_id"] == restaurant)
        return (f"{restaurant} on by-restaurant (partition, offset, kind, id, occurred_at): {mine}; "
                f"its windows: {windows}")

    def assert_exact_and_on_time(self) -> list[dict[str, Any]]:
        """Every window of the truth final once, exact, and closed within ``ON_TIME_MS`` of
        its end + grace; returns the finals. Reviews may still be in enrichment."""
        tumbling = self.tumbling()
        repeated = {k: len(v) for k, v in tumbling.items() if k in self.truth_reviews and len(v) > 1}
        assert not repeated, f"windows with more than one final aggregate: {repeated}"
        wrong = self.wrong_windows(since_ms=self.started_ms)
        assert not wrong, f"{len(wrong)} of {len(self.truth_reviews)} windows wrong:\n" + "\n".join(wrong)
        finals = [tumbling[k][0] for k in self.truth_reviews]
        late = {k: ms(a["closed_at"]) - (k[1] + WINDOW_MS + GRACE_MS)
                for k, a in zip(self.truth_reviews, finals, strict=True)}
        behind = {k: d for k, d in late.items() if d > ON_TIME_MS}
        assert not behind, f"windows closed later than end + grace + {ON_TIME_MS} ms: {behind}"
        print(f"\n{self.tag}: {len(finals)} windows, closed {min(late.values())}..{max(late.values())} ms "
              f"after end + grace; provisional labels {sum(a['provisional_labels'] for a in finals)} "
              f"of {sum(a['reviews'] for a in finals)} reviews")
        return finals

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


def locate_reviews(bootstrap: str, registry_url: str, missing: set[str], *, partitions: int,
                   group: str = "reviewpulse") -> str:
    """Where reviews without an enriched record are, on the input and on the stage's topic:
    per partition, how many, their first and last offsets, and the group's committed offset
    and the partition's end. Says whether the worker skipped them (committed past them) or
    never got there (committed before them: a stalled fetch, not a loss)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from streams.protocol import REVIEW, kind_of, read_item
    from streams.topics import REVIEWS_CREATED

    found: dict[str, dict[int, list[int]]] = {REVIEWS_CREATED: {}, BY_RESTAURANT: {}}
    try:
        with TopicReader(bootstrap, registry_url=registry_url) as decoded:
            for record in decoded.read_new(REVIEWS_CREATED):
                if isinstance(record.value, dict) and record.value.get("event_id") in missing:
                    found[REVIEWS_CREATED].setdefault(record.partition, []).append(record.offset)
    except Exception as exc:  # a poison record on the input: say so, keep the stage's view
        found.pop(REVIEWS_CREATED)
        missing_note = f" ({REVIEWS_CREATED} unreadable here: {exc!r})"
    else:
        missing_note = ""
    with TopicReader(bootstrap) as raw:
        for record in raw.read_new(BY_RESTAURANT):
            if kind_of(record.value) == REVIEW and read_item(record.value).event_id in missing:
                found[BY_RESTAURANT].setdefault(record.partition, []).append(record.offset)
    owed_latest, owed_ever, letters = set(), set(), Counter()
    with TopicReader(bootstrap) as raw:
        latest: dict[bytes | None, Any] = {}
        for record in raw.read_new(PANES_CHANGELOG):
            latest[record.key] = record.value
            owed_ever.update(missing.intersection(_pending_of(record.value)))
        for value in latest.values():
            owed_latest.update(missing.intersection(_pending_of(value)))
        for record in raw.read_new(DLQ_TOPIC):
            data = record.value if isinstance(record.value, bytes) else b""  # Avro: ids as UTF-8
            letters.update(event_id for event_id in missing if event_id.encode() in data)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    lines = [f"{len(missing)} reviews not enriched{missing_note}; owed by a pane now {len(owed_latest)}, "
             f"owed by a pane ever {len(owed_ever)}, in the DLQ {len(letters)}; e.g. {sorted(missing)[:3]}"]
    try:
        for topic, by_partition in found.items():
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            commits = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
            try:
                ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
            except KafkaException as exc:  # the topic does not exist (yet)
                lines.append(f"{topic}: {exc}")
                continue
            cells = [f"p{p}: {len(by_partition.get(p, []))} missing"
                     + (f" at {min(by_partition[p])}..{max(by_partition[p])}" if by_partition.get(p) else "")
                     + f", committed {commits[p]} of end {ends[p]}" for p in range(partitions)]
            lines.append(f"{topic}: " + "; ".join(cells))
    finally:
        consumer.close()
    return "\n".join(lines)


def _pending_of(value: Any) -> set[str]:
    """The review ids a panes-changelog value owes (its ``pending``); empty for a tombstone."""
    try:
        pane = json.loads(value) if value else {}
    except ValueError:
        return set()
    return set(pane.get("pending", {})) if isinstance(pane, dict) else set()


def own_stack(new_stack: NewStack, name: str, *, partitions: int = 4,
              llm_latency_ms: int = 5) -> Iterator[Stack]:
    """A module's own stack (its tests kill workers or reconfigure the LLM), stopped after
    the module: ``yield from own_stack(new_stack, name)`` in a module-scoped fixture."""
    stack = new_stack(name, partitions=partitions).start(llm_args=["--latency-ms", str(llm_latency_ms)])
    yield stack
    stack.stop()


def kill_three_times(stack: Stack, run: Run, *, data_dir: Any, env: dict[str, str], name: str,
                     seconds: float, reviews_per_s: int) -> tuple[list[float], Process]:
    """Traffic for ``seconds``, and three ``kill -9`` of the worker within about 20 s, each
    restarted on ``data_dir``: the first once windows of the run have closed, the second as
    soon as the restarted worker answers /health (joining, restoring), the third once the
    next one is ready (joined, tables restored) and catching up. Waits for every window's
    final aggregate; returns the kill times and the last worker (running)."""
    worker = stack.add_worker(data_dir=data_dir, extra_env=env, name=f"{name}-0")
    worker.wait_ready()
    kills: list[float] = []
    with run.traffic(seconds=seconds, reviews_per_s=reviews_per_s) as producing:
        until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows of the run closed")
        for i in range(1, 4):
            if i == 3:
                worker.wait_ready()
            kills.append(time.time())
            worker.stop(kill=True)
            stack.workers.remove(worker)
            worker = stack.add_worker(data_dir=data_dir, extra_env=env, name=f"{name}-{i}")
        run.finish(producing, timeout_s=90, since_ms=int(kills[0] * 1000))
    return kills, worker


def take_over(stack: Stack, run: Run, *, tmp_path: Any, env: dict[str, str], name: str, seconds: float,
              reviews_per_s: int) -> tuple[float, float, list[int], list[int], Process]:
    """Two workers share the partitions; one is killed under load once windows of the run
    have closed, and the survivor takes every partition. Waits for every window's final
    aggregate; returns the kill time, how long the takeover took, the victim's partitions,
    the survivor's, and the survivor."""
    survivor = stack.add_worker(data_dir=tmp_path / "survivor", extra_env=env, name=f"{name}-survivor")
    victim = stack.add_worker(data_dir=tmp_path / "victim", extra_env=env, name=f"{name}-victim")
    # Both own by-restaurant partitions before the traffic (the group has settled on two members).
    until(lambda: (owned_partitions(survivor), owned_partitions(victim)), timeout_s=60,
          what="both workers own partitions", done=lambda p: bool(p[0] and p[1]))
    with run.traffic(seconds=seconds, reviews_per_s=reviews_per_s) as producing:
        until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows of the run closed")
        victim_partitions = owned_partitions(victim)
        killed = time.time()
        victim.stop(kill=True)
        stack.workers.remove(victim)
        taken = until(lambda: owned_partitions(survivor), timeout_s=EMBEDDED_SESSION_TIMEOUT_S + 40,
                      what="the survivor owns every partition", interval_s=0.2,
                      done=lambda p: len(p) == stack.partitions)
        took_over_s = time.time() - killed
        run.finish(producing, timeout_s=90, since_ms=int(killed * 1000),
                   context=f"victim owned {victim_partitions}, killed "
                           f"{(killed * 1000 - run.started_ms) / 1000:.1f} s into the run, "
                           f"survivor owned {taken} {took_over_s:.1f} s after the kill")
    return killed, took_over_s, victim_partitions, taken, survivor
