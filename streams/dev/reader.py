"""Read whole topics back without a consumer group (tests, the demo, the benchmark).

A group join on Tansu takes about half the session timeout; assigning partitions
directly and reading to each partition's end takes milliseconds and is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streams.topic_io import read_to_end


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
            "enable.partition.eof": True,
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

        Read until each partition reports its end (``streams.topic_io.read_to_end``);
        ``timeout_s`` is the longest wait for the next record or end-of-partition.
        """
        from confluent_kafka import OFFSET_BEGINNING
        from confluent_kafka.serialization import MessageField, SerializationContext

        metadata = self.consumer.list_topics(timeout=timeout_s).topics
        assignment = [
            TopicPartition(topic, partition, self.positions.get((topic, partition), OFFSET_BEGINNING))
            for topic in topics if topic in metadata for partition in metadata[topic].partitions
        ]
        out: list[Record] = []
        for message in read_to_end(self.consumer, assignment, timeout_s=timeout_s):
            tp = (message.topic(), message.partition())
            value = message.value()
            if self._deserializer is not None and value is not None:
                value = self._deserializer(value, SerializationContext(tp[0], MessageField.VALUE))
            out.append(Record(tp[0], tp[1], message.offset(), message.key(), value,
                              tuple(message.headers() or ()), message.timestamp()[1]))
            self.positions[tp] = message.offset() + 1
        return out
