"""Records sent as one aiokafka batch per topic-partition: one delivery future a batch.

Sending records one by one (Faust's ``Producer.send``) costs Faust's sensors, a future, a
partitioner call and the accumulator's bookkeeping per record: 14.6-16.1 µs of CPU each
here, against 3.8-4.1 µs when a chunk's records are appended to one ``BatchBuilder`` per
partition and sent with ``send_batch`` (``python -m bench.produce``).

The price is a wait: aiokafka queues a batch for a partition only once the batch already
waiting there has drained into a produce request (one request in flight per broker),
where a record sent alone joins that waiting batch. So only sends whose acknowledgement
nobody is waiting on to see state go this way: the stage's changelog records (published
behind the batch) and its ``reviews.enriched`` records (the join follows them). Decode's
by-restaurant records stay one by one: with them batched, phase b's p99 occurred -> pane
written rose from 472 / 536 / 473 / 402 to 580 / 535 / 514 / 437 ms (README, Benchmarks).

A keyed record goes to the partition Faust's producer would pick for its key
(``Producer.key_partition``: the app's partitioner, murmur2 by default), so partitioning
is the same as a one-by-one send. Records of one topic-partition keep their order. A batch
that fills (the producer's ``max_batch_size``) is sent and the next one opened; aiokafka
queues it behind the batches already waiting for that partition, so order holds across
senders too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple


class Record(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None  # None: the partition of the key, as the producer picks it


class Sent(NamedTuple):
    """One batch handed to the producer: its records are ``base_offset .. + count - 1``."""

    topic: str
    partition: int
    count: int
    delivery: asyncio.Future[Any]  # the batch's RecordMetadata (``offset``: the base offset)


async def send_records(kafka: Any, records: Iterable[Record], *,
                       partition_of: Callable[[str, bytes | None], int]) -> list[Sent]:
    """Hand ``records`` to the aiokafka producer ``kafka`` as one batch per topic-partition.

    ``partition_of(topic, key)`` places a record without a partition (the worker passes
    Faust's ``Producer.key_partition``). Returns once every batch is queued, without waiting
    for an acknowledgement: await each :attr:`Sent.delivery`, or :func:`delivered`, for it.
    """
    open_batches: dict[tuple[str, int], Any] = {}
    placed: dict[tuple[str, bytes], int] = {}  # a batch repeats its keys (restaurants): hash each once
    known: set[str] = set()
    sent: list[Sent] = []

    async def send(topic: str, partition: int, builder: Any) -> None:
        delivery = await kafka.send_batch(builder, topic, partition=partition)
        sent.append(Sent(topic, partition, builder.record_count(), delivery))

    for topic, key, value, headers, partition in records:
        if topic not in known:  # metadata first: the partitioner needs the topic's partitions
            await kafka.partitions_for(topic)
            known.add(topic)
        if partition is None:
            if key is None:  # no key: the partitioner's choice, record by record
                partition = partition_of(topic, key)
            elif (partition := placed.get((topic, key))) is None:
                partition = placed[topic, key] = partition_of(topic, key)
        builder = open_batches.get((topic, partition))
        if builder is not None and builder.append(key=key, value=value, timestamp=None,
                                                  headers=headers or []) is None:
            await send(topic, partition, builder)  # full: sent, and another opened
            builder = None
        if builder is None:
            builder = open_batches[topic, partition] = kafka.create_batch()
            # A batch's first record always fits, whatever its size.
            builder.append(key=key, value=value, timestamp=None, headers=headers or [])
    # aiokafka queues a batch only once the one waiting for its partition has drained into a
    # produce request (one request in flight per broker): the partitions' waits overlap.
    await asyncio.gather(*(send(topic, partition, builder)
                           for (topic, partition), builder in open_batches.items()))
    return sent


def delivered(sent: Iterable[Sent]) -> Awaitable[list[Any]]:
    """One awaitable for every batch's acknowledgement (raises the first failure)."""
    return asyncio.gather(*(batch.delivery for batch in sent))
