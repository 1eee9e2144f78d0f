"""No producer input loses, stalls or hides an event: three contracts with producing services.

Against the real pipeline (Tansu, our registry, the LLM simulator, a worker subprocess),
with confluent-kafka's official ``AvroSerializer`` as the producing service:

- a registry outage mid-stream: records whose writer schema the worker has not seen wait
  in decode (neither acked nor dead-lettered) and flow once the registry is back; and a
  registry that answers, but 429 and then 401 for 20 s (issue 30, finding 5): the same;
- writers that differ from ours only in the logical type of a timestamp: epoch ms, scaled
  micros, or a dead letter ``logical_type_mismatch`` for a ``date``;
- copies of one retried review on ``reviews.retry`` (in one batch with it, and after its
  join): one ``reviews.enriched``, the window counts the review once, each extra copy is a
  counted duplicate and the worker's accounting identity holds. A copy that arrives while
  the first one's LLM call is in flight is a counted duplicate too (not enriched twice).

Own stacks: the outage test stops and restarts the registry, the refusal test puts a
gateway in front of it (tests/registry_gateway.py); the others share one module stack
whose worker retries through ``reviews.retry`` on the first LLM failure.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_hostile_input import identity_gap
from test_pipeline_support import DLQ, ENRICHED, RETRY, Outputs, simulator_config

import avro_schemas
from streams.dev.reader import TopicReader
from streams.dev.stack import Process, Stack, start_registry
from tests.integration.conftest import NewStack, Producer, ms, producer_for
from tests.records import order_delivered, review_created
from tests.registry_gateway import Fault, RegistryGateway
from tests.until import until

pytestmark = pytest.mark.integration

REVIEWS_CREATED = "reviews.created"
ORDERS_DELIVERED = "orders.delivered"
AGGREGATES = "restaurants.aggregates"
REVIEW_SUBJECT = f"{REVIEWS_CREATED}-value"
ENV = {
    "REVIEWPULSE_WINDOW_SIZE_S": "5",
    "REVIEWPULSE_HOPPING_SIZE_S": "10",
    "REVIEWPULSE_HOPPING_STEP_S": "5",
    "REVIEWPULSE_WINDOW_GRACE_S": "2",
    "REVIEWPULSE_WINDOW_CLOSE_INTERVAL_S": "0.5",
    "REVIEWPULSE_LLM_TIMEOUT_S": "5",
    "REVIEWPULSE_LLM_MAX_RETRIES": "0",  # a failed call goes to reviews.retry at once
    "REVIEWPULSE_LLM_RETRY_DELAY_S": "2",  # long enough to put a second copy behind the first
    "REVIEWPULSE_LLM_BACKOFF_BASE_S": "0.05",
    "REVIEWPULSE_BREAKER_RESET_TIMEOUT_S": "2",
}


# --- helpers ---------------------------------------------------------------------------------
def metric_samples(worker: Process) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{worker.url}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def registry_waits_by_reason(worker: Process) -> dict[str, float]:
    return {dict(labels)["reason"]: value for (name, labels), value in metric_samples(worker).items()
            if name == "reviewpulse_registry_waits_total"}


def registry_waits(worker: Process) -> float:
    return sum(registry_waits_by_reason(worker).values())


def duplicates_skipped(worker: Process) -> float:
    return metric_samples(worker).get(("reviewpulse_duplicates_skipped_total", ()), 0.0)


def outcomes(worker: Process, topic: str) -> dict[str, float]:
    """``consumed`` and each outcome of one input topic, from the worker's /metrics."""
    counts: dict[str, float] = {}
    for (name, labels), value in metric_samples(worker).items():
        labels_of = dict(labels)
        if labels_of.get("topic") != topic:
            continue
        if name == "reviewpulse_events_consumed_total":
            counts["consumed"] = value
        elif name == "reviewpulse_input_outcomes_total":
            counts[labels_of["outcome"]] = value
    return counts


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {k: int(after.get(k, 0) - before.get(k, 0)) for k in after}


def schema_with(record_name: str, *, types: dict[str, Any] | None = None,
                extra_fields: list[dict[str, Any]] = ()) -> str:
    """Our schema of ``record_name`` with some top-level field types replaced or fields added."""
    schema = json.loads(avro_schemas.schema_text(record_name))
    for field in schema["fields"]:
        if types and field["name"] in types:
            field["type"] = types[field["name"]]
    schema["fields"] += list(extra_fields)
    return json.dumps(schema)


def serializer(service: Producer, schema_text: str) -> Any:
    from confluent_kafka.schema_registry.avro import AvroSerializer

    return AvroSerializer(service.registry, schema_text, conf={"auto.register.schemas": True})


def serialize(ser: Any, topic: str, value: dict[str, Any]) -> bytes:
    from confluent_kafka.serialization import MessageField, SerializationContext

    return ser(value, SerializationContext(topic, MessageField.VALUE))


def schema_id(framed: bytes) -> int:
    return int.from_bytes(framed[1:5], "big")


def tumbling(outputs: Outputs, restaurants: set[str]) -> list[dict[str, Any]]:
    return [r.value for r in outputs.poll().where(
        AGGREGATES, lambda v: v["restaurant_id"] in restaurants and v["window_kind"] == "TUMBLING")]


# --- 1. registry outage in decode ----------------------------------------------------------------
@pytest.fixture
def outage_stack(new_stack: NewStack) -> Iterator[Stack]:
    stack = new_stack("registry-outage", partitions=2).start(llm_args=["--latency-ms", "5"])
    yield stack
    stack.stop()  # stops the restarted registry: stack.registry is replaced below


def test_registry_outage_in_decode_waits_loses_nothing_and_dead_letters_nothing(
        outage_stack: Stack, tmp_path: Path) -> None:
    stack = outage_stack
    assert stack.broker and stack.registry
    worker = stack.add_worker(data_dir=tmp_path / "worker", extra_env=ENV, name="outage-worker")
    service = Producer(stack)
    outputs = Outputs(stack, topics=(ENRICHED, AGGREGATES))
    raw = TopicReader(stack.broker.bootstrap)  # dead letters read as bytes: needs no registry
    tag = uuid.uuid4().hex[:6]
    restaurants = [f"rest-{tag}-{i}" for i in range(3)]
    reviews: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []

    def next_review() -> dict[str, Any]:
        reviews.append(review_created(tag, len(reviews), restaurant_id=restaurants[len(reviews) % 3]))
        return reviews[-1]

    def next_order() -> dict[str, Any]:
        orders.append(order_delivered(tag, len(orders), restaurant_id=restaurants[len(orders) % 3]))
        return orders[-1]

    try:
        # While the registry runs: the worker fetches (and caches) our writer schemas.
        for _ in range(6):
            service.send_review(next_review())
        for _ in range(3):
            service.send_order(next_order())
        outputs.wait_enriched([r["event_id"] for r in reviews], timeout_s=60)
        # A new writer version of each input, registered just before the outage: the worker
        # has never seen these ids, so decoding them needs the registry.
        optional = [{"name": "channel", "type": ["null", "string"], "default": None, "doc": "App or web."}]
        review_v2 = serializer(service, schema_with("ReviewCreated", extra_fields=optional))
        order_v2 = serializer(service, schema_with("OrderDelivered", extra_fields=optional))
        first_v2 = next_review()
        first_v2_bytes = serialize(review_v2, REVIEWS_CREATED, {**first_v2, "channel": "app"})
        first_order_v2 = next_order()
        first_order_v2_bytes = serialize(order_v2, ORDERS_DELIVERED, {**first_order_v2, "channel": "web"})
        assert schema_id(first_v2_bytes) != schema_id(service.review_bytes(reviews[0]))
        raw.read_new(DLQ)  # from here on, any dead letter is new
        waits_before = registry_waits(worker)
        consumed_before = {t: outcomes(worker, t) for t in (REVIEWS_CREATED, ORDERS_DELIVERED)}

        port = stack.registry.port
        stack.registry.stop()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{stack.registry.url}/subjects", timeout=2)
        # While it is down: the serializers' cached ids, new (v2) and known (v1) writers.
        during: list[dict[str, Any]] = []
        service.send_raw(REVIEWS_CREATED, first_v2_bytes, key=first_v2["event_id"].encode())
        service.send_raw(ORDERS_DELIVERED, first_order_v2_bytes, key=first_order_v2["order_id"].encode())
        during.append(first_v2)
        for n in range(8):
            rv = next_review()
            if n % 2:
                service.send_review(rv)
            else:
                value = serialize(review_v2, REVIEWS_CREATED, {**rv, "channel": None})
                service.send_raw(REVIEWS_CREATED, value, key=rv["event_id"].encode())
            during.append(rv)
            od = next_order()
            service.send_raw(ORDERS_DELIVERED, serialize(order_v2, ORDERS_DELIVERED, {**od, "channel": None}),
                             key=od["order_id"].encode())

        # The worker waits: decode asked the registry again and again and gave nothing up.
        until(lambda: registry_waits(worker) - waits_before, timeout_s=30, done=lambda n: n >= 2,
              what="decode waiting out the registry outage (reviewpulse_registry_waits_total +2)")
        assert worker.proc.poll() is None, "the worker died during the registry outage"
        assert httpx.get(f"{worker.url}/health", timeout=5).status_code == 200
        dead = raw.read_new(DLQ)
        assert dead == [], f"dead letters during the registry outage: {[d.value[:200] for d in dead]}"
        waiting = delta(outcomes(worker, REVIEWS_CREATED), consumed_before[REVIEWS_CREATED])
        assert waiting.get("dead_lettered", 0) == 0 and waiting.get("enriched", 0) < len(during), waiting

        stack.registry = start_registry(stack.broker, log_dir=stack.log_dir / "restarted", port=port)
        outputs.wait_enriched([r["event_id"] for r in reviews], timeout_s=60)
        # Every window of the run final: by then a repeated reviews.enriched would be out too.
        until(lambda: sum(a["reviews"] + a["orders_delivered"] + a["late_events"]
                          for a in tumbling(outputs, set(restaurants))),
              timeout_s=60, done=lambda n: n >= len(reviews) + len(orders),
              what="every review and order counted in a final tumbling aggregate")
        per_event: dict[str, int] = {}
        for record in outputs.poll().enriched([r["event_id"] for r in reviews]):
            per_event[record.value["event_id"]] = per_event.get(record.value["event_id"], 0) + 1
        assert {e: n for e, n in per_event.items() if n != 1} == {}, "reviews enriched more than once"
        assert len(per_event) == len(reviews)
        assert raw.read_new(DLQ) == [], "dead letters after the registry came back"
        final = sum(a["reviews"] + a["orders_delivered"] + a["late_events"]
                    for a in tumbling(outputs, set(restaurants)))
        assert final == len(reviews) + len(orders), "a window counted a record twice"
        review_outcomes = until(lambda: outcomes(worker, REVIEWS_CREATED), timeout_s=30,
                                done=lambda d: d.get("enriched", 0) >= len(reviews),
                                what="every review's outcome counted")
        order_outcomes = outcomes(worker, ORDERS_DELIVERED)
        others = {k: v for k, v in review_outcomes.items() if k not in ("consumed", "enriched") and v}
        assert (review_outcomes.get("consumed"), review_outcomes.get("enriched"), others) == (
            len(reviews), len(reviews), {}), review_outcomes
        others = {k: v for k, v in order_outcomes.items() if k not in ("consumed", "folded") and v}
        assert (order_outcomes.get("consumed"), order_outcomes.get("folded"), others) == (
            len(orders), len(orders), {}), order_outcomes
        print(f"\nregistry outage: {len(during)} reviews and {len(during)} orders produced while down; "
              f"waits {registry_waits(worker) - waits_before:.0f}; all {len(reviews)} reviews enriched once, "
              f"{len(orders)} orders folded, no dead letter")
    finally:
        raw.close()
        outputs.close()
        service.close()


# --- the module stack of tests 2 and 3 -------------------------------------------------------------
@pytest.fixture(scope="module")
def contract_stack(new_stack: NewStack) -> Iterator[Stack]:
    stack = new_stack("producer-contracts", partitions=2).start(llm_args=["--latency-ms", "5"])
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def contract_worker(contract_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Process:
    return contract_stack.add_worker(data_dir=tmp_path_factory.mktemp("contract-worker"), extra_env=ENV,
                                     name="contract-worker")


@pytest.fixture(scope="module")
def service(contract_stack: Stack) -> Iterator[Producer]:
    yield from producer_for(contract_stack)


@pytest.fixture
def outputs(contract_stack: Stack, contract_worker: Process) -> Iterator[Outputs]:
    out = Outputs(contract_stack, topics=(ENRICHED, DLQ, AGGREGATES))
    yield out
    out.close()


# --- 2. writers with foreign logical types -------------------------------------------------------
MICROS = {"type": "long", "logicalType": "timestamp-micros"}
# Writer type of occurred_at -> how many of its units make one ms.
FOREIGN_TIMESTAMPS: dict[str, tuple[Any, int]] = {
    "local-timestamp-millis": ({"type": "long", "logicalType": "local-timestamp-millis"}, 1),
    "long": ("long", 1),
    "timestamp-micros": (MICROS, 1_000),
}


def test_foreign_logical_type_writers_are_read_as_epoch_ms_or_dead_lettered_and_nothing_stalls(
        contract_stack: Stack, contract_worker: Process, service: Producer, outputs: Outputs) -> None:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    tag = uuid.uuid4().hex[:6]
    ours = review_created(tag, 0, restaurant_id=f"rest-{tag}-ours")
    service.send_review(ours)  # our schema is a version of the subject before the foreign ones
    sent: dict[str, tuple[dict[str, Any], int]] = {}
    ids = {schema_id(service.review_bytes(ours))}
    for n, (logical, (avro_type, units_per_ms)) in enumerate(FOREIGN_TIMESTAMPS.items(), start=1):
        rv = review_created(tag, n, restaurant_id=f"rest-{tag}-{n}")
        writer = serializer(service, schema_with("ReviewCreated", types={"occurred_at": avro_type}))
        # The last unit below a ms: a reader that truncates micros lands on the same ms.
        value = serialize(writer, REVIEWS_CREATED,
                          {**rv, "occurred_at": rv["occurred_at"] * units_per_ms + units_per_ms - 1})
        ids.add(schema_id(value))
        service.send_raw(REVIEWS_CREATED, value, key=rv["event_id"].encode())
        sent[logical] = (rv, rv["occurred_at"])
    assert len(ids) == 1 + len(FOREIGN_TIMESTAMPS), f"each writer has its own schema id: {ids}"

    # A `date` writer (an int of days): BACKWARD, the registry's default, refuses it (an int
    # reader cannot read the long of the version before), with a clear 409.
    dated = review_created(tag, 9, restaurant_id=f"rest-{tag}-date")
    days = dated["occurred_at"] // 86_400_000
    date_schema = schema_with("ReviewCreated", types={"occurred_at": {"type": "int", "logicalType": "date"}})
    assert service.registry.get_compatibility() == "BACKWARD"
    with pytest.raises(SchemaRegistryError) as refused:
        serialize(serializer(service, date_schema), REVIEWS_CREATED, {**dated, "occurred_at": days})
    assert refused.value.http_status_code == 409, refused.value
    assert "incompatible" in str(refused.value).lower(), refused.value
    # A producing team that lowers its subject to NONE gets it registered: decode refuses it.
    service.registry.set_compatibility(REVIEW_SUBJECT, "NONE")
    try:
        value = serialize(serializer(service, date_schema), REVIEWS_CREATED, {**dated, "occurred_at": days})
    finally:
        service.registry.delete_config(REVIEW_SUBJECT)
    service.send_raw(REVIEWS_CREATED, value, key=dated["event_id"].encode())

    # An order whose three timestamps are timestamp-micros: scaled, so its delay is 60 s.
    order_writer = serializer(service, schema_with(
        "OrderDelivered", types={f: MICROS for f in ("occurred_at", "promised_at", "delivered_at")}))
    od = order_delivered(tag, 0, restaurant_id=f"rest-{tag}-order")
    service.send_raw(ORDERS_DELIVERED, serialize(order_writer, ORDERS_DELIVERED, {
        **od, **{f: od[f] * 1_000 + 999 for f in ("occurred_at", "promised_at", "delivered_at")}}),
        key=od["order_id"].encode())

    enriched = {r.value["event_id"]: r.value for r in outputs.wait_enriched(
        [ours["event_id"], *(rv["event_id"] for rv, _ in sent.values())], timeout_s=60)}
    got = {logical: ms(enriched[rv["event_id"]]["occurred_at"]) - occurred_ms
           for logical, (rv, occurred_ms) in sent.items()}
    assert got == dict.fromkeys(FOREIGN_TIMESTAMPS, 0), f"occurred_at minus the ms produced: {got}"
    # Found by its key: bytes that do not decode carry no trace id.
    [letter] = outputs.wait_for(DLQ, lambda v: v["key"] == dated["event_id"].encode(), timeout_s=30)
    stage_reason = (letter.value["stage"], letter.value["reason"])
    assert stage_reason == ("decode", "logical_type_mismatch"), letter.value
    assert "date" in letter.value["error_message"], letter.value
    [aggregate] = until(lambda: tumbling(outputs, {od["restaurant_id"]}), timeout_s=30,
                        what="the micros order's final tumbling aggregate")
    assert aggregate["orders_delivered"] == 1 and aggregate["late_events"] == 0, aggregate
    assert aggregate["delivery_delay"]["max_ms"] == 60_000, aggregate["delivery_delay"]

    # Nothing stalled: an ordinary review produced afterwards flows.
    after = review_created(tag, 10, restaurant_id=f"rest-{tag}-after")
    service.send_review(after)
    outputs.wait_enriched([after["event_id"]], timeout_s=30)
    assert contract_worker.proc.poll() is None
    assert outputs.where(DLQ, lambda v: tag.encode() in (v["key"] or b"")) == [letter]


# --- 3. copies of one retried review ---------------------------------------------------------------
LATER_COPY_MS = 3_000  # due after the first copy's join (at most JOIN_IDLE_S = 0.2 s after its answer)
IN_FLIGHT_COPY_MS = 150  # due while the first copy's LLM call (800 ms below) is still in flight


class RetryTopic:
    """``reviews.retry`` read as bytes (internal JSON, streams.protocol), from now on."""

    def __init__(self, stack: Stack) -> None:
        assert stack.broker
        self.reader = TopicReader(stack.broker.bootstrap)
        self.reader.read_new(RETRY)  # what earlier tests left
        self.seen: list[Any] = []

    def close(self) -> None:
        self.reader.close()

    def of(self, event_id: str) -> list[Any]:
        from streams.protocol import ProtocolError, read_item

        self.seen.extend(self.reader.read_new(RETRY))
        out = []
        for record in self.seen:
            try:
                if read_item(record.value).event_id == event_id:
                    out.append(record)
            except ProtocolError:
                pass
        return out

    def first_call_fails(self, stack: Stack, service: Producer, rv: dict[str, Any]) -> Any:
        """Produce ``rv`` with its first LLM call failing (HTTP 500): its retry record."""
        with simulator_config(stack, script=["500"]):
            service.send_review(rv)
            [original] = until(lambda: self.of(rv["event_id"]), timeout_s=30,
                               what="the review's retry record")
        return original

    @staticmethod
    def put_copies(service: Producer, original: Any, *, later_ms: tuple[int, ...]) -> None:
        """Copies of ``original`` right behind it in its partition, headers and all; a copy
        ``later_ms`` 0 is byte for byte, others are due that much after the original."""
        for delay_ms in later_ms:
            value = original.value
            if delay_ms:
                payload = json.loads(value)
                payload["nb"] += delay_ms
                value = json.dumps(payload).encode()
            service.producer.produce(RETRY, key=original.key, value=value,
                                     headers=list(original.headers), partition=original.partition)
        service.producer.flush(10)


def test_copies_of_a_retried_review_enrich_once_count_once_and_keep_the_identity(
        contract_stack: Stack, contract_worker: Process, service: Producer, outputs: Outputs) -> None:
    from streams.protocol import read_item

    tag = uuid.uuid4().hex[:6]
    rv = review_created(tag, 0, restaurant_id=f"rest-{tag}-retry")
    retry = RetryTopic(contract_stack)
    try:
        before = outcomes(contract_worker, REVIEWS_CREATED)
        skipped_before = duplicates_skipped(contract_worker)
        original = retry.first_call_fails(contract_stack, service, rv)
        # A byte-for-byte copy: the retry stage releases it with the original, so both reach
        # the restaurant stage in one batch and one enrichment call. A third copy is due 3 s
        # later: it comes back after the first one's answer joined the pane.
        RetryTopic.put_copies(service, original, later_ms=(0, LATER_COPY_MS))
        assert time.time() * 1000 < read_item(original.value).not_before_ms, "copies landed after it was due"

        [enriched] = outputs.wait_enriched([rv["event_id"]], timeout_s=30)
        [aggregate] = until(lambda: tumbling(outputs, {rv["entity"]["restaurant_id"]}), timeout_s=30,
                            what="the retried review's final tumbling aggregate")
        assert len(outputs.poll().enriched([rv["event_id"]])) == 1, "the retried review was enriched twice"
        assert (enriched.value["status"], enriched.value["attempts"]) == ("ENRICHED", 2), enriched.value
        labels = sum(aggregate[k] for k in ("positive", "neutral", "negative", "critical"))
        assert (aggregate["reviews"], labels) == (1, 1), aggregate
        # Joined once (the LLM's label, llm_calls 1) or not before the close (provisional 1).
        provisional = aggregate["provisional_labels"]
        assert provisional >= 0 and aggregate["llm_calls"] + provisional == 1, aggregate
        final = until(lambda: delta(outcomes(contract_worker, REVIEWS_CREATED), before), timeout_s=15,
                      what="the third copy back, and consumed = enriched + folded + dead-lettered "
                           "+ duplicate + in retry",
                      done=lambda d: d.get("retry_returned") == 3 and identity_gap(d) == 0)
        assert (final["consumed"], final["enriched"], final["retry_scheduled"], final["duplicate"]) == (
            1, 1, 1, 2), final
        assert duplicates_skipped(contract_worker) - skipped_before == 2  # both extra copies, counted
        assert len(outputs.poll().enriched([rv["event_id"]])) == 1, "the third copy was enriched"
        assert len(retry.of(rv["event_id"])) == 3, "a further retry was scheduled"
    finally:
        retry.close()


def test_a_retry_copy_arriving_while_the_first_is_in_flight_is_enriched_once(
        contract_stack: Stack, contract_worker: Process, service: Producer, outputs: Outputs) -> None:
    tag = uuid.uuid4().hex[:6]
    rv = review_created(tag, 0, restaurant_id=f"rest-{tag}-inflight")
    retry = RetryTopic(contract_stack)
    try:
        before = outcomes(contract_worker, REVIEWS_CREATED)
        original = retry.first_call_fails(contract_stack, service, rv)
        with simulator_config(contract_stack, latency_ms=800):  # the retried call is slow
            RetryTopic.put_copies(service, original, later_ms=(IN_FLIGHT_COPY_MS,))
            outputs.wait_enriched([rv["event_id"]], timeout_s=30)
            until(lambda: delta(outcomes(contract_worker, REVIEWS_CREATED), before), timeout_s=15,
                  what="the copy's outcome counted (duplicate, or enriched again)",
                  done=lambda d: d.get("retry_returned") == 2
                  and d.get("enriched", 0) + d.get("duplicate", 0) == 2)
        until(lambda: tumbling(outputs, {rv["entity"]["restaurant_id"]}), timeout_s=30,
              what="the review's final tumbling aggregate")  # by then a second record is out
        attempts = [r.value["attempts"] for r in outputs.poll().enriched([rv["event_id"]])]
        assert len(attempts) == 1, f"reviews.enriched records of one review (their attempts): {attempts}"
    finally:
        retry.close()


# --- 4. a registry that answers 429, then 401, for 20 s ---------------------------------------------
RATE_LIMITED_S = 10.0  # 429 then 401, 20 s in all: what issue 30 measured
UNAUTHORIZED_S = 10.0
RETRY_AFTER_S = 2  # above decode's first backoffs (0.5 s, 1 s), so honouring it shows in the gaps
GAP_SLACK_S = 0.25  # a timer and a local round trip: a wait never ends that much early
REFUSED_REVIEWS = 60


@pytest.fixture
def refusal_stack(new_stack: NewStack) -> Iterator[Stack]:
    stack = new_stack("registry-refusals", partitions=2).start(llm_args=["--latency-ms", "5"])
    yield stack
    stack.stop()


@pytest.fixture
def refusal_gateway(refusal_stack: Stack) -> Iterator[RegistryGateway]:
    """The worker's registry URL; producers and the test's readers go to the registry direct."""
    assert refusal_stack.registry
    with RegistryGateway(refusal_stack.registry.url) as gateway:
        yield gateway


def test_a_registry_answering_429_then_401_for_20_s_dead_letters_nothing_and_all_is_enriched_after(
        refusal_stack: Stack, refusal_gateway: RegistryGateway, tmp_path: Path) -> None:
    stack, gateway = refusal_stack, refusal_gateway
    assert stack.broker
    worker = stack.add_worker(data_dir=tmp_path / "worker", name="refusal-worker",
                              extra_env={**ENV, "REVIEWPULSE_SCHEMA_REGISTRY_URL": gateway.url})
    service = Producer(stack)
    outputs = Outputs(stack, topics=(ENRICHED, AGGREGATES))
    raw = TopicReader(stack.broker.bootstrap)  # dead letters read as bytes
    tag = uuid.uuid4().hex[:6]
    restaurants = [f"rest-{tag}-{i}" for i in range(3)]
    reviews = [review_created(tag, n, restaurant_id=restaurants[n % 3]) for n in range(6 + REFUSED_REVIEWS)]
    warm_up, refused = reviews[:6], reviews[6:]
    try:
        for rv in warm_up:  # the worker fetches (and caches) our writer schema through the gateway
            service.send_review(rv)
        outputs.wait_enriched([r["event_id"] for r in warm_up], timeout_s=60)
        optional = [{"name": "channel", "type": ["null", "string"], "default": None, "doc": "App or web."}]
        review_v2 = serializer(service, schema_with("ReviewCreated", extra_fields=optional))
        values = [serialize(review_v2, REVIEWS_CREATED, {**rv, "channel": "app"}) for rv in refused]
        v2_path = f"/schemas/ids/{schema_id(values[0])}"
        assert schema_id(values[0]) != schema_id(service.review_bytes(warm_up[0]))
        raw.read_new(DLQ)  # from here on, any dead letter is new
        waits_before = registry_waits_by_reason(worker)
        outcomes_before = outcomes(worker, REVIEWS_CREATED)

        gateway.fail(Fault(429, for_s=RATE_LIMITED_S, retry_after=str(RETRY_AFTER_S)),
                     Fault(401, for_s=UNAUTHORIZED_S))
        for rv, value in zip(refused, values, strict=True):
            service.send_raw(REVIEWS_CREATED, value, key=rv["event_id"].encode())

        # Into the 401s: decode was refused for 10 s and gave nothing up.
        until(gateway.current, timeout_s=RATE_LIMITED_S + 5, done=lambda phase: phase and phase.status == 401,
              what="the gateway answering 401")
        assert worker.proc.poll() is None, "the worker died while the registry refused it"
        dead = raw.read_new(DLQ)
        assert dead == [], f"{len(dead)} dead letters while the registry said 429: {dead[0].value[:300]!r}"
        assert outputs.poll().enriched(r["event_id"] for r in refused) == [], "enriched without a schema?"
        until(lambda: {a.status for a in gateway.answers(faulted=True) if a.path == v2_path},
              timeout_s=UNAUTHORIZED_S, done=lambda seen: seen == {429, 401},
              what="the worker asking for the new writer schema, refused with 429 and then 401")
        until(gateway.current, timeout_s=UNAUTHORIZED_S + 5, done=lambda phase: phase is None,
              what="the gateway's 20 s of refusals over")
        assert raw.read_new(DLQ) == [], "dead letters while the registry answered 401"
        outputs.wait_enriched([r["event_id"] for r in refused], timeout_s=60)
        # Every window of the run final: by then a repeated reviews.enriched would be out too.
        until(lambda: sum(a["reviews"] + a["late_events"] for a in tumbling(outputs, set(restaurants))),
              timeout_s=60, done=lambda n: n >= len(reviews),
              what="every review counted in a final tumbling aggregate")
        per_event: dict[str, int] = {}
        for record in outputs.poll().enriched(r["event_id"] for r in reviews):
            per_event[record.value["event_id"]] = per_event.get(record.value["event_id"], 0) + 1
        assert {e: n for e, n in per_event.items() if n != 1} == {}, "reviews enriched more than once"
        assert len(per_event) == len(reviews)
        assert raw.read_new(DLQ) == [], "dead letters after the registry served again"
        final = sum(a["reviews"] + a["late_events"] for a in tumbling(outputs, set(restaurants)))
        assert final == len(reviews), "a window counted a review twice"
        counted = until(lambda: delta(outcomes(worker, REVIEWS_CREATED), outcomes_before), timeout_s=30,
                        done=lambda d: d.get("enriched", 0) >= len(refused),
                        what="every refused review's outcome counted")
        assert {k: v for k, v in counted.items() if v} == {
            "consumed": len(refused), "enriched": len(refused)}, counted

        # The waits were counted, by reason, and a 429's Retry-After was honoured.
        waits = {reason: int(n - waits_before.get(reason, 0))
                 for reason, n in registry_waits_by_reason(worker).items() if n > waits_before.get(reason, 0)}
        assert set(waits) == {"rate_limited", "unauthorized"}, waits
        asks = sorted((a for a in gateway.answers() if a.path == v2_path), key=lambda a: a.at_s)
        refusals = [a.status for a in asks if a.faulted]
        assert waits == {"rate_limited": refusals.count(429), "unauthorized": refusals.count(401)}, (
            waits, refusals)
        gaps_after_429 = [b.at_s - a.at_s for a, b in pairwise(asks) if a.status == 429]
        assert min(gaps_after_429) >= RETRY_AFTER_S - GAP_SLACK_S, gaps_after_429
        assert [a.faulted for a in asks] == [True] * len(refusals) + [False], "fetched once it was served"
        print(f"\nregistry refusals: {len(refused)} reviews of a new writer version produced while the "
              f"registry answered 429 for {RATE_LIMITED_S:g} s then 401 for {UNAUTHORIZED_S:g} s; waits "
              f"{waits}; gaps after a 429 (Retry-After {RETRY_AFTER_S} s) "
              f"{[round(g, 2) for g in gaps_after_429]}; all {len(reviews)} reviews enriched once, "
              f"counted in final windows {final}; dead letters 0")
    finally:
        raw.close()
        outputs.close()
        service.close()
