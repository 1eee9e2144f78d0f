"""Where the registry's records live: the compacted Kafka topic ``_schemas``, or memory.

Single writer: one registry process owns the topic. It reads the topic to its end offset
once at start-up, then applies its own writes to its state only after the broker has
acknowledged them. A second registry on the same topic would not see the first one's
later writes until it restarts (Confluent solves this with leader election and a
tailing reader; for a local, single-process registry that is not needed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from schema_registry.errors import RegistryStoreError

log = logging.getLogger(__name__)

SCHEMAS_TOPIC = "_schemas"
TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code
READ_TIMEOUT_S = 30.0  # reading the whole topic at start-up; it is small (KBs per schema)
FETCH_WAIT_MS = 200  # one poll of the start-up read; short, the loop stops at the end offset

Record = tuple[bytes, bytes | None]


class Log(Protocol):
    """An append-only log of (key, value) records; value None is a tombstone."""

    async def start(self) -> list[Record]:
        """Open the log and return every record in it, in order."""
        ...

    async def append(self, key: bytes, value: bytes | None) -> None:
        """Append one record and return once it is durable."""
        ...

    async def stop(self) -> None: ...


class MemoryLog:
    """A log in a list: for unit tests, and a registry that needs no broker."""

    def __init__(self, records: list[Record] | None = None) -> None:
        self.records: list[Record] = list(records or [])

    async def start(self) -> list[Record]:
        return list(self.records)

    async def append(self, key: bytes, value: bytes | None) -> None:
        self.records.append((key, value))

    async def stop(self) -> None:
        return None


class KafkaLog:
    """The ``_schemas`` topic: one partition, ``cleanup.policy=compact``, acks=all writes."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = SCHEMAS_TOPIC,
        replication_factor: int = 1,  # local use; a production cluster wants 3
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.replication_factor = replication_factor
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> list[Record]:
        try:
            await self._ensure_topic()
            records = await self._read_all()
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=0
            )
            await self._producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            await self.stop()
            raise RegistryStoreError(f"cannot open topic {self.topic!r}: {exc!r}") from exc
        log.info("schemas topic read", extra={"topic": self.topic, "records": len(records)})
        return records

    async def _ensure_topic(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            new = NewTopic(
                self.topic,
                num_partitions=1,  # one partition: a total order of registry writes
                replication_factor=self.replication_factor,
                topic_configs={"cleanup.policy": "compact"},
            )
            response = await admin.create_topics([new])
        finally:
            await admin.close()
        for _topic, code, message in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise RegistryStoreError(f"cannot create topic {self.topic!r}: {code} {message}")

    async def _read_all(self) -> list[Record]:
        partition = TopicPartition(self.topic, 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )
        await consumer.start()
        records: list[Record] = []
        try:
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            end = (await consumer.end_offsets([partition]))[partition]
            async with asyncio.timeout(READ_TIMEOUT_S):
                while await consumer.position(partition) < end:
                    batches = await consumer.getmany(partition, timeout_ms=FETCH_WAIT_MS)
                    for message in batches.get(partition, []):
                        if message.key is not None:
                            records.append((message.key, message.value))
        finally:
            await consumer.stop()
        return records

    async def append(self, key: bytes, value: bytes | None) -> None:
        if self._producer is None:
            raise RegistryStoreError("the schemas topic is not open")
        try:
            await self._producer.send_and_wait(self.topic, key=key, value=value, partition=0)
        except KafkaError as exc:
            raise RegistryStoreError(f"cannot write to {self.topic!r}: {exc!r}") from exc

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
