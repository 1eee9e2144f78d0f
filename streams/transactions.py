"""Exactly-once for the restaurant stage: a Kafka transaction per batch and partition.

One transactional producer per by-restaurant partition the worker owns, with the id
``{app_id}-stage-{partition}``: whoever initialises that id next (the partition's next
owner, or this worker restarted) fences this one and aborts its open transaction (EOS v1
fencing; one producer per worker would need KIP-447's consumer-group metadata in
``TxnOffsetCommit``, which aiokafka does not send). A batch's sends for a partition open its
transaction; :meth:`StageTransactions.commit` adds the partition's input offset and commits,
so the outputs, the changelog records and the offset become visible together to a
``read_committed`` reader, or not at all. Faust's design and why it is not used:
docs/exactly-once.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

logger = logging.getLogger(__name__)

# The first send of a transaction right after the last one's commit is refused until the
# coordinator has written the last one's markers (Kafka 4's transaction verification answers
# aiokafka's produce version NOT_ENOUGH_REPLICAS, a retriable error): a few milliseconds, so
# the retry is not left at aiokafka's 100 ms, which every batch paid.
RETRY_BACKOFF_MS = 10


class NotOwned(RuntimeError):
    """A send for a partition this worker has no transactional producer for (revoked)."""


class StageTransactions:
    def __init__(self, *, producer_config: Mapping[str, Any], app_id: str, group_id: str,
                 input_topic: str, timeout_ms: int) -> None:
        self.producer_config = dict(producer_config)
        self.app_id, self.group_id, self.input_topic = app_id, group_id, input_topic
        self.timeout_ms = timeout_ms
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._open: set[int] = set()  # partitions whose transaction has begun
        self._lock = asyncio.Lock()  # assign/revoke against each other

    def transactional_id(self, partition: int) -> str:
        return f"{self.app_id}-stage-{partition}"

    @property
    def partitions(self) -> set[int]:
        return set(self._producers)

    async def assign(self, partitions: Iterable[int]) -> None:
        """Start (and so fence every earlier holder of) the producers of ``partitions``."""
        async with self._lock:
            new = sorted(set(partitions) - set(self._producers))
            producers = {p: AIOKafkaProducer(**self.producer_config, enable_idempotence=True,
                                             transactional_id=self.transactional_id(p),
                                             transaction_timeout_ms=self.timeout_ms,
                                             retry_backoff_ms=RETRY_BACKOFF_MS)
                         for p in new}
            await asyncio.gather(*(producer.start() for producer in producers.values()))
            self._producers.update(producers)
            if new:
                logger.info("Transactional producers started (fencing earlier owners): %s",
                            ", ".join(self.transactional_id(p) for p in new))

    async def revoke(self, partitions: Iterable[int]) -> None:
        """Stop the producers of ``partitions``; an open transaction is aborted (its batch
        is not acked: the partition's next owner replays it)."""
        async with self._lock:
            gone = [p for p in partitions if p in self._producers]
            await asyncio.gather(*(self._stop(p) for p in gone))

    async def _stop(self, partition: int) -> None:
        producer = self._producers.pop(partition)
        try:
            if partition in self._open:
                self._open.discard(partition)
                await producer.abort_transaction()
        except Exception as exc:  # fenced or broker gone: the transaction dies with the id
            logger.warning("Aborting the transaction of %s failed: %r", self.transactional_id(partition), exc)
        finally:
            await producer.stop()

    async def send(self, stage_partition: int, topic: str, *, key: bytes | None, value: bytes | None,
                   partition: int | None = None, headers: list[tuple[str, bytes]] | None = None) -> Any:
        """Send in ``stage_partition``'s transaction (begun here if need be); the delivery."""
        producer = self._producers.get(stage_partition)
        if producer is None:
            raise NotOwned(f"no transactional producer for partition {stage_partition} (revoked)")
        if stage_partition not in self._open:
            await producer.begin_transaction()
            self._open.add(stage_partition)
        return await producer.send(topic, value=value, key=key, partition=partition, headers=headers)

    async def commit(self, partitions: Iterable[int], offsets: Mapping[int, int]) -> None:
        """Commit the transaction of each of ``partitions`` (and of each partition with an
        offset), with the input offset ``offsets[p]`` (the next to read) when given."""
        wanted = set(partitions) | set(offsets)
        await asyncio.gather(*(self._commit(p, offsets.get(p)) for p in sorted(wanted)))

    async def _commit(self, partition: int, offset: int | None) -> None:
        producer = self._producers.get(partition)
        if producer is None:
            raise NotOwned(f"no transactional producer for partition {partition} (revoked)")
        if partition not in self._open:
            if offset is None:
                return
            await producer.begin_transaction()
            self._open.add(partition)
        try:
            if offset is not None:
                await producer.send_offsets_to_transaction(
                    {TopicPartition(self.input_topic, partition): offset}, self.group_id)
            await producer.commit_transaction()
        finally:
            self._open.discard(partition)

    async def stop(self) -> None:
        await self.revoke(list(self._producers))
