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
        if registry_url is not None:
            from confluent_kafka.schema_registry import SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroDeserializer

            self._deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))

    def close(self) -> None:
        self.consumer.close()

    def read_new(self, *topics: str, timeout_s: float = 10.0) -> list[Record]:
        """Every record appended since the last call (for each topic), in partition order."""
        from confluent_kafka.serialization import MessageField, SerializationContext

        metadata = self.consumer.list_topics(timeout=timeout_s).topics
        wanted: list[TopicPartition] = []
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            if topic not in metadata:
                continue
            for partition in metadata[topic].partitions:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout_s)
                start = max(self.positions.get((topic, partition), low), low)
                if start < high:
                    wanted.append(TopicPartition(topic, partition, start))
                    ends[(topic, partition)] = high
        out: list[Record] = []
        if not wanted:
            return out
        self.consumer.assign(wanted)
        remaining = dict(ends)
        while remaining:
            message = self.consumer.poll(timeout_s)
            if message is None:
                raise TimeoutError(f"no record within {timeout_s} s; still waiting for {remaining}")
            if message.error():
                continue
            tp = (message.topic(), message.partition())
            value = message.value()
            if self._deserializer is not None and value is not None:
                value = self._deserializer(value, SerializationContext(tp[0], MessageField.VALUE))
            out.append(Record(tp[0], tp[1], message.offset(), message.key(), value,
                              tuple(message.headers() or ()), message.timestamp()[1]))
            self.positions[tp] = message.offset() + 1
            if tp in remaining and message.offset() + 1 >= remaining[tp]:
                del remaining[tp]
        self.consumer.unassign()
        return out
