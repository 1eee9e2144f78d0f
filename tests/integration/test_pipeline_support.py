"""Helpers the pipeline tests share (no tests here): output collection and simulator knobs.

Imported by the ``test_pipeline_*`` modules as ``test_pipeline_support`` (pytest puts this
directory on ``sys.path``; the tests directories have no ``__init__.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from streams.dev.reader import Record
from streams.dev.stack import Stack
from streams.protocol import ProtocolError, read_item
from tests.until import until

ENRICHED = "reviews.enriched"
CRITICAL = "reviews.critical_alert"
ALERTS = "restaurants.alerts"
DLQ = "reviewpulse.dlq"
RETRY = "reviews.retry"


class Outputs:
    """Everything read so far from the output topics, decoded with the official deserializer.

    A tailing consumer (assigned from the beginning, no group) rather than reading up to
    ``get_watermark_offsets``: Tansu under-reports that for multi-record batches.
    """

    def __init__(self, stack: Stack, topics: Iterable[str] = (ENRICHED, CRITICAL, ALERTS, DLQ, RETRY)
                 ) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        assert stack.broker and stack.registry
        self.topics = tuple(topics)
        self.records: dict[str, list[Record]] = {t: [] for t in self.topics}
        self.registry = SchemaRegistryClient({"url": stack.registry.url})
        self.deserialize = AvroDeserializer(self.registry)
        self.consumer = Consumer({"bootstrap.servers": stack.broker.bootstrap,
                                  "group.id": "reviewpulse-tests", "enable.auto.commit": False,
                                  "fetch.wait.max.ms": 10})
        metadata = until(lambda: self.consumer.list_topics(timeout=10).topics, timeout_s=30,
                         what=f"the worker's output topics {self.topics}",
                         done=lambda topics: all(t in topics for t in self.topics))
        self.consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                              for t in self.topics for p in metadata[t].partitions])

    def close(self) -> None:
        self.consumer.close()
        self.registry.close()

    def poll(self) -> Outputs:
        from confluent_kafka.serialization import MessageField, SerializationContext

        while True:
            batch = self.consumer.consume(1000, timeout=0.2)
            if not batch:
                return self
            for m in batch:
                if m.error():
                    continue
                value = m.value()
                if value is not None and value[:1] == b"\x00":
                    value = self.deserialize(value, SerializationContext(m.topic(), MessageField.VALUE))
                elif m.topic() == RETRY:  # internal JSON (streams.protocol): the review and its attempt
                    try:
                        item = read_item(value)
                    except ProtocolError:  # a forged record a test wrote: kept as bytes
                        pass
                    else:
                        value = {**item.record, "attempt": item.attempt, "pane_start_ms": item.pane_start_ms}
                self.records[m.topic()].append(Record(m.topic(), m.partition(), m.offset(), m.key(),
                                                      value, tuple(m.headers() or ()), m.timestamp()[1]))

    def where(self, topic: str, predicate: Callable[[dict[str, Any]], bool]) -> list[Record]:
        return [r for r in self.records[topic] if isinstance(r.value, dict) and predicate(r.value)]

    def enriched(self, event_ids: Iterable[str]) -> list[Record]:
        wanted = set(event_ids)
        return self.where(ENRICHED, lambda v: v["event_id"] in wanted)

    def wait_for(self, topic: str, predicate: Callable[[dict[str, Any]], bool], *, count: int = 1,
                 timeout_s: float = 30.0) -> list[Record]:
        """Poll until ``topic`` holds at least ``count`` records matching ``predicate``."""
        return until(lambda: self.poll().where(topic, predicate), timeout_s=timeout_s,
                     what=f"{count} matching records on {topic}", done=lambda found: len(found) >= count)

    def wait_enriched(self, event_ids: Iterable[str], *, timeout_s: float = 30.0) -> list[Record]:
        """Poll until every event id has at least one enriched record; return them all."""
        wanted = set(event_ids)

        def missing() -> set[str]:
            self.poll()
            return wanted - {r.value["event_id"] for r in self.enriched(wanted)}

        until(missing, timeout_s=timeout_s, what=f"enriched records for {len(wanted)} events",
              done=lambda left: not left)
        return self.enriched(wanted)


def open_outputs(stack: Stack) -> Iterator[Outputs]:
    """Body of each module's ``outputs`` fixture (a fixture imported across modules is shadowed)."""
    out = Outputs(stack)
    yield out
    out.close()


def produce(producer: Any, topic: str, value: bytes, *, key: bytes | None) -> tuple[int, int]:
    """Produce one record with the session producer; (partition, offset) it landed at."""
    landed: list[Any] = []
    producer.producer.produce(topic, key=key, value=value,
                              on_delivery=lambda err, msg: landed.append((err, msg)))
    producer.producer.flush(10)
    (err, msg), = landed
    assert err is None, err
    return msg.partition(), msg.offset()


@contextlib.contextmanager
def simulator_config(stack: Stack, **changes: Any) -> Iterator[dict[str, Any]]:
    """Reconfigure the session simulator; always restore what it had, even on failure."""
    assert stack.llm is not None
    url = f"{stack.llm.url}/_sim/config"
    before = httpx.get(url, timeout=5).json()
    response = httpx.post(url, json=changes, timeout=5)
    assert response.status_code == 200, response.text
    try:
        yield response.json()
    finally:
        restored = httpx.post(url, json=before, timeout=5)
        assert restored.status_code == 200, restored.text


def simulator_requests(stack: Stack) -> list[dict[str, Any]]:
    assert stack.llm is not None
    return httpx.get(f"{stack.llm.url}/_sim/requests", timeout=5).json()


def header(record: Record, name: str) -> bytes | None:
    for key, value in record.headers:
        if key == name:
            return value
    return None
