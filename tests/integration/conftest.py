"""One session-scoped embedded system: a broker, our registry, the LLM simulator, one worker.

The broker is Apache Kafka, or Tansu with ``--broker tansu`` (tests/conftest.py). A group
join on Tansu costs about half the session timeout, so the worker starts once per session
with a 6 s session timeout. Tests isolate themselves by unique restaurant and
event ids. Windows are short (5 s tumbling, 20 s hopping every 5 s, 2 s grace) so window
closing is observable in seconds. A missing part fails loudly; nothing is skipped.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

import avro_schemas
from streams.dev.reader import TopicReader
from streams.dev.stack import Process, Stack
from streams.topics import ORDERS_DELIVERED, REVIEWS_CREATED
from tests.records import order_delivered, review_created

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

# Windows every integration test's worker uses, so closing is observable in seconds.
SMALL_WINDOWS = {
    "REVIEWPULSE_WINDOW_SIZE_S": "5",
    "REVIEWPULSE_HOPPING_SIZE_S": "20",
    "REVIEWPULSE_HOPPING_STEP_S": "5",
    "REVIEWPULSE_WINDOW_GRACE_S": "2",
    "REVIEWPULSE_WINDOW_CLOSE_INTERVAL_S": "0.5",
}
# Settings of the session worker: small windows, and a daily cap a test can reach quickly.
WORKER_ENV = {
    **SMALL_WINDOWS,
    "REVIEWPULSE_RESTAURANT_DAILY_COST_CAP_USD": "0.002",
    "REVIEWPULSE_LLM_RETRY_DELAY_S": "0.5",
    "REVIEWPULSE_LLM_TIMEOUT_S": "2",
    "REVIEWPULSE_LLM_BACKOFF_BASE_S": "0.05",
    "REVIEWPULSE_BREAKER_RESET_TIMEOUT_S": "2",
    "REVIEWPULSE_LLM_API_KEY": "sk-test-never-logged-4242",
    "REVIEWPULSE_LOG_LEVEL": "info",
}
OUTPUT_TOPICS = ("reviews.enriched", "reviews.critical_alert", "restaurants.aggregates",
                 "restaurants.alerts", "reviewpulse.dlq")


@pytest.fixture(scope="session")
def log_dir() -> Path:
    path = ARTIFACTS / "logs" / time.strftime("%Y%m%d-%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path


class NewStack(Protocol):
    def __call__(self, name: str, *, partitions: int = 4) -> Stack: ...


@pytest.fixture(scope="session")
def new_stack(log_dir: Path, broker_kind: str) -> NewStack:
    """A stack of its own for a module or test (not started), on the session's broker kind,
    with its logs in a folder of the session's log dir named ``name``."""

    def make(name: str, *, partitions: int = 4) -> Stack:
        return Stack(log_dir=log_dir / name, partitions=partitions, broker_kind=broker_kind)

    return make


@pytest.fixture(scope="session")
def stack(new_stack: NewStack) -> Iterator[Stack]:
    stack = new_stack("session").start(llm_args=["--latency-ms", "5"])
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Process:
    return stack.add_worker(data_dir=tmp_path_factory.mktemp("worker"), extra_env=WORKER_ENV)


@pytest.fixture
def reader(stack: Stack) -> Iterator[TopicReader]:
    """Reads outputs decoded with the official confluent-kafka AvroDeserializer."""
    assert stack.broker and stack.registry
    reader = TopicReader(stack.broker.bootstrap, registry_url=stack.registry.url)
    yield reader
    reader.close()


class Producer:
    """Another service: confluent-kafka's Producer and official AvroSerializer."""

    def __init__(self, stack: Stack) -> None:
        from confluent_kafka import Producer as KafkaProducer
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroSerializer

        assert stack.broker and stack.registry
        registry = self.registry = SchemaRegistryClient({"url": stack.registry.url})
        self.review_serializer = AvroSerializer(registry, avro_schemas.schema_text("ReviewCreated"))
        self.order_serializer = AvroSerializer(registry, avro_schemas.schema_text("OrderDelivered"))
        self.producer = KafkaProducer({"bootstrap.servers": stack.broker.bootstrap, "linger.ms": 1})

    def review_bytes(self, review: dict[str, Any]) -> bytes:
        from confluent_kafka.serialization import MessageField, SerializationContext

        return self.review_serializer(review, SerializationContext(REVIEWS_CREATED, MessageField.VALUE))

    def send_review(self, review: dict[str, Any], *, key: bytes | None = None) -> None:
        self.send_raw(REVIEWS_CREATED, self.review_bytes(review), key=key or review["event_id"].encode())

    def send_order(self, order: dict[str, Any]) -> None:
        from confluent_kafka.serialization import MessageField, SerializationContext

        value = self.order_serializer(order, SerializationContext(ORDERS_DELIVERED, MessageField.VALUE))
        self.send_raw(ORDERS_DELIVERED, value, key=order["order_id"].encode())

    def send_raw(self, topic: str, value: bytes, *, key: bytes | None = None) -> None:
        self.producer.produce(topic, key=key, value=value)
        self.producer.flush(10)


    def close(self) -> None:
        self.producer.flush(10)
        self.registry.close()


def producer_for(stack: Stack) -> Iterator[Producer]:
    """A fixture body for a module's own stack: ``yield from producer_for(stack)``."""
    producer = Producer(stack)
    yield producer
    producer.close()


@pytest.fixture(scope="session")
def producer(stack: Stack) -> Iterator[Producer]:
    producer = Producer(stack)
    yield producer
    producer.close()


_counter = itertools.count()


def ms(value: Any) -> int:
    """Epoch milliseconds of a timestamp the topic reader decoded (an int or a datetime)."""
    return value if isinstance(value, int) else int(value.timestamp() * 1000)


def tumbling_finals(aggregates: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The tumbling-window aggregates read, by (restaurant, window start): one list per window."""
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for a in aggregates:
        if a["window_kind"] == "TUMBLING":
            out.setdefault((a["restaurant_id"], ms(a["window_start"])), []).append(a)
    return out


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}-{next(_counter)}"


@pytest.fixture
def review_factory() -> Callable[..., dict[str, Any]]:
    """A ReviewCreated dict with unique ids (tests.records); a test overrides only what it is
    about, entity fields flat."""
    entity_keys = {"review_id", "order_id", "user_id", "restaurant_id", "rating", "text", "language"}

    def make(**overrides: Any) -> dict[str, Any]:
        review = review_created(unique("t"), restaurant_id=unique("rest"), rating=4,
                                text="Comida boa, chegou quente.", user_id="usr-1")
        review["entity"].update({k: v for k, v in overrides.items() if k in entity_keys})
        review.update({k: v for k, v in overrides.items() if k not in entity_keys})
        return review

    return make


@pytest.fixture
def order_factory() -> Callable[..., dict[str, Any]]:
    """An OrderDelivered dict with unique ids, delivered now, a minute after its promise."""

    def make(**overrides: Any) -> dict[str, Any]:
        return order_delivered(unique("t"), **{"restaurant_id": unique("rest"), **overrides})

    return make
