"""Read whole topics back without a consumer group (tests, the demo, the DLQ command).

A group join on Tansu takes about half the session timeout; assigning partitions
directly and reading up to the high watermark takes milliseconds and is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: Any  # decoded dict, or raw bytes when no deserializer is given
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int


class TopicReader:
    """Reads topics from where it last stopped (or the beginning) up to their current end."""

    def __init__(self, bootstrap: str, *, registry_url: str | None = None) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "reviewpulse-reader",  # required by librdkafka; never joined (assign only)
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        })
        self.positions: dict[tuple[str, int], int] = {}
        self._deserializer = None
        self._registry: Any = None
        if registry_url is not None:
            from confluent_kafka.schema_registry import SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroDeserializer

            self._registry = SchemaRegistryClient({"url": registry_url})
            self._deserializer = AvroDeserializer(self._registry)

    def close(self) -> None:
        self.consumer.close()
        if self._registry is not None:
            self._registry.close()  # it holds an httpx session

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read_new(self, *topics: str, timeout_s: float = 10.0) -> list[Record]:
        """Every record appended since the last call (for each topic), in partition order.

        "The end" is the high watermark of the fetch responses (librdkafka's cached value),
        not ListOffsets: Tansu answers ListOffsets with the last batch's base offset + 1,
        which would stop the read inside the last batch (see streams/transport.py).
        """
        import time

        from confluent_kafka import OFFSET_BEGINNING
        from confluent_kafka.serialization import MessageField, SerializationContext

        metadata = self.consumer.list_topics(timeout=timeout_s).topics
        assignment = [
            TopicPartition(topic, partition, self.positions.get((topic, partition), OFFSET_BEGINNING))
            for topic in topics if topic in metadata for partition in metadata[topic].partitions
        ]
        out: list[Record] = []
        if not assignment:
            return out
        self.consumer.assign(assignment)
        remaining = {(tp.topic, tp.partition) for tp in assignment}
        deadline = time.monotonic() + timeout_s
        while remaining:
            message = self.consumer.poll(0.05)
            if message is not None and not message.error():
                tp = (message.topic(), message.partition())
                value = message.value()
                if self._deserializer is not None and value is not None:
                    value = self._deserializer(value, SerializationContext(tp[0], MessageField.VALUE))
                out.append(Record(tp[0], tp[1], message.offset(), message.key(), value,
                                  tuple(message.headers() or ()), message.timestamp()[1]))
                self.positions[tp] = message.offset() + 1
            for tp in list(remaining):
                _, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
                if high >= 0 and self.positions.get(tp, 0) >= high:
                    remaining.discard(tp)
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not read to their end in {timeout_s} s: {sorted(remaining)}")
        self.consumer.unassign()
        return out
