"""First contact on a fresh broker: /ready means topics exist and the worker is in its group.

Its own stack, with no topic created beforehand (not even the inputs), so what the worker
creates is all there is. An analytics consumer subscribes the moment /ready says 200 and
must receive the first output: before this, /ready answered 200 half a session timeout
before the group join, no topic existed yet, and librdkafka looked for a missing
subscribed topic again only after 5 minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streams.dev.procs import free_port
from streams.dev.stack import Stack, start_worker, worker_env
from streams.topics import (
    AGGREGATES,
    CRITICAL_ALERT,
    DLQ,
    ORDERS_DELIVERED,
    RESTAURANT_ALERTS,
    RETRY,
    REVIEWS_CREATED,
    REVIEWS_ENRICHED,
    by_restaurant_topic_name,
)
from tests.integration.conftest import NewStack, Producer
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.embedded]

PARTITIONS = 3  # not Tansu's auto-create default, so a created topic shows whose it is
APP_ID = "first-contact"
ALL_TOPICS = {REVIEWS_CREATED, ORDERS_DELIVERED, REVIEWS_ENRICHED, CRITICAL_ALERT, AGGREGATES,
              RESTAURANT_ALERTS, RETRY, DLQ, by_restaurant_topic_name(APP_ID)}
READY_WITHIN_S = 10.0  # issue 14: a worker on the embedded stack answers within 10 s of start


@pytest.fixture(scope="module")
def bare_stack(new_stack: NewStack) -> Iterator[Stack]:
    stack = new_stack("first-contact", partitions=PARTITIONS)
    stack.start(llm_args=["--latency-ms", "5"], create_inputs=False)
    yield stack
    stack.stop()


def topic_partitions(bootstrap: str) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def ready_status(url: str) -> int:
    try:
        return httpx.get(f"{url}/ready", timeout=1.0).status_code
    except httpx.HTTPError:
        return 0


def test_consumer_subscribing_at_ready_receives_the_first_output(bare_stack, review_factory, tmp_path):
    stack = bare_stack
    assert stack.broker and stack.registry
    assert not ALL_TOPICS & set(topic_partitions(stack.broker.bootstrap))
    env = worker_env(broker=stack.broker, registry=stack.registry, llm=stack.llm,
                     data_dir=tmp_path / "worker", web_port=free_port(),
                     extra={"REVIEWPULSE_APP_ID": APP_ID, "REVIEWPULSE_TOPIC_PARTITIONS": str(PARTITIONS)})
    started = time.monotonic()
    worker = start_worker(env, log_dir=stack.log_dir, name="first-contact-worker")
    stack.workers.append(worker)
    answered_s = time.monotonic() - started
    first = httpx.get(f"{worker.url}/ready", timeout=1.0)
    statuses = [first.status_code]
    until(lambda: statuses.append(ready_status(worker.url)) or statuses[-1] == 200,
          timeout_s=60, what="/ready 200", interval_s=0.05)
    ready_s = time.monotonic() - started
    print(f"\nfirst answer (/health) {answered_s:.1f} s, /ready 200 {ready_s:.1f} s after start; "
          f"first /ready said {first.status_code} {first.json()}")

    assert statuses[0] == 503 and 503 in statuses[:-1], "ready before the group join"
    assert ready_s < READY_WITHIN_S
    partitions = topic_partitions(stack.broker.bootstrap)
    assert {name: partitions.get(name) for name in ALL_TOPICS} == dict.fromkeys(ALL_TOPICS, PARTITIONS)

    consumer = Consumer({
        "bootstrap.servers": stack.broker.bootstrap, "group.id": "analytics-first-contact",
        "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
    })
    errors: list[str] = []
    consumer.subscribe([REVIEWS_ENRICHED])
    review = review_factory()
    producer = Producer(stack)
    registry = SchemaRegistryClient({"url": stack.registry.url})
    try:
        producer.send_review(review)
        deserialize = AvroDeserializer(registry)

        def enriched_event_ids() -> list[str]:
            message = consumer.poll(0.5)
            if message is None:
                return []
            if message.error():
                errors.append(str(message.error()))
                return []
            value = deserialize(message.value(), SerializationContext(REVIEWS_ENRICHED, MessageField.VALUE))
            return [value["event_id"]]

        seen: list[str] = []
        until(lambda: seen.extend(enriched_event_ids()) or review["event_id"] in seen,
              timeout_s=60, what="the first enriched review at the subscriber", interval_s=0)
    finally:
        consumer.close()
        producer.close()
        registry.close()
    assert not [e for e in errors if "not available" in e or "UNKNOWN_TOPIC" in e], errors
