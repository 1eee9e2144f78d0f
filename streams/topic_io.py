"""Reading topics from the offline commands (dlq, reprocess, reconcile) with the worker's
Kafka security settings, to the end of each partition as the fetches report it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from streams.codecs import to_ms
from streams.settings import Settings
from streams.topics import DLQ, REVIEWS_CREATED

KAFKA_TIMEOUT_S = 15.0


def kafka_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings for the operator commands (the worker's security settings)."""
    conf: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers,
                            "security.protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None  # checked by Settings
        conf |= {"sasl.mechanism": settings.kafka_sasl_mechanism,
                 "sasl.username": settings.kafka_sasl_username,
                 "sasl.password": settings.kafka_sasl_password.get_secret_value()}
    return conf


def reader_consumer(settings: Settings, purpose: str) -> Any:
    """A consumer that reads by assignment (its group is never joined, nothing is committed)."""
    from confluent_kafka import Consumer

    return Consumer({**kafka_config(settings), "group.id": f"{settings.app_id}-{purpose}",
                     "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                     "enable.partition.eof": True})


def read_to_end(consumer: Any, assignments: list[Any], *,
                timeout_s: float = KAFKA_TIMEOUT_S) -> Iterator[Any]:
    """Messages from ``assignments`` until every partition reports end-of-partition.

    ``consumer`` must be configured with ``enable.partition.eof``. The end is the high
    watermark of the fetch responses, not ``get_watermark_offsets``: Tansu answers
    ListOffsets(latest) with the start of the last record batch (so a reader stopping there
    misses the batch's other records), and a cached watermark from an earlier assignment
    can say "at the end" before the first fetch of this one has answered.
    """
    from confluent_kafka import KafkaError

    if not assignments:
        return
    consumer.assign(assignments)
    open_partitions = {(tp.topic, tp.partition) for tp in assignments}
    try:
        while open_partitions:
            message = consumer.poll(timeout_s)
            if message is None:
                raise TimeoutError(f"no record within {timeout_s} s; still reading {open_partitions}")
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard((message.topic(), message.partition()))
                    continue
                raise RuntimeError(f"reading {message.topic()}: {error}")
            yield message
    finally:
        consumer.unassign()


def _partitions(consumer: Any, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=KAFKA_TIMEOUT_S).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise ValueError(f"topic {topic} does not exist")
    return sorted(metadata.partitions)


def _from_time(consumer: Any, topic: str, partitions: list[int], from_ms: int) -> list[Any]:
    """Each partition assigned from its first record at or after ``from_ms`` (none: left out)."""
    from confluent_kafka import TopicPartition

    starts = consumer.offsets_for_times([TopicPartition(topic, p, from_ms) for p in partitions],
                                        timeout=KAFKA_TIMEOUT_S)
    return [TopicPartition(topic, tp.partition, tp.offset) for tp in starts if tp.offset >= 0]


def read_dead_letters(settings: Settings, *, reasons: Sequence[str] = (),
                      since_ms: int | None = None) -> list[dict[str, Any]]:
    """Every DeadLetter (optionally of ``reasons``), oldest last failure first.

    Decoded with confluent-kafka's official AvroDeserializer (the writer schema by id).
    With ``since_ms``, each partition is read from the first record written at or after it
    (``offsets_for_times``): a letter whose last failure is that late was written later.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    conf: dict[str, Any] = {"url": settings.schema_registry_url}
    if settings.schema_registry_username and settings.schema_registry_password:
        conf["basic.auth.user.info"] = (f"{settings.schema_registry_username}:"
                                        f"{settings.schema_registry_password.get_secret_value()}")
    if settings.schema_registry_ca_file:
        conf["ssl.ca.location"] = str(settings.schema_registry_ca_file)
    registry = SchemaRegistryClient(conf)
    deserialize = AvroDeserializer(registry)
    context = SerializationContext(DLQ, MessageField.VALUE)
    consumer = reader_consumer(settings, "dlq")
    try:
        if DLQ not in consumer.list_topics(timeout=KAFKA_TIMEOUT_S).topics:
            return []  # no dead letter was ever written
        partitions = _partitions(consumer, DLQ)
        assignments = ([TopicPartition(DLQ, p, OFFSET_BEGINNING) for p in partitions] if since_ms is None
                       else _from_time(consumer, DLQ, partitions, since_ms))
        letters = [deserialize(m.value(), context) for m in read_to_end(consumer, assignments)
                   if m.value() is not None]
    finally:
        consumer.close()
        registry.close()
    if reasons:
        letters = [x for x in letters if x["reason"] in set(reasons)]
    return sorted(letters, key=lambda x: (to_ms(x["last_failure_at"]), x["dead_letter_id"]))


@dataclass(frozen=True)
class RawRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def read_time_range(settings: Settings, *, from_ms: int, to_ms: int,
                    topic: str = REVIEWS_CREATED) -> list[RawRecord]:
    """Records of ``topic`` whose Kafka timestamp lies in ``[from_ms, to_ms)``.

    Each partition is read from the first offset at or after ``from_ms``
    (``offsets_for_times``) to its end, keeping the records in range: the offset for
    ``to_ms`` is not trusted (producer timestamps are not ordered, and Tansu answers a
    time past the end with offset 0).
    """
    if to_ms <= from_ms:
        raise ValueError("--to must be after --from")
    consumer = reader_consumer(settings, "reprocess")
    try:
        assignments = _from_time(consumer, topic, _partitions(consumer, topic), from_ms)
        return [RawRecord(m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1])
                for m in read_to_end(consumer, assignments)
                if from_ms <= m.timestamp()[1] < to_ms]
    finally:
        consumer.close()


def iter_topic(settings: Settings, topic: str, *, purpose: str = "reconcile") -> Iterator[RawRecord]:
    """Every record of ``topic`` from the beginning of each partition to its end, in
    partition order; nothing when the topic does not exist (nothing was ever written)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    consumer = reader_consumer(settings, purpose)
    try:
        if topic not in consumer.list_topics(timeout=KAFKA_TIMEOUT_S).topics:
            return
        assignments = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in _partitions(consumer, topic)]
        for m in read_to_end(consumer, assignments):
            yield RawRecord(m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1])
    finally:
        consumer.close()
