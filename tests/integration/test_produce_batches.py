"""Records sent a batch per partition (streams/produce.py) against the real broker.

Consumers of ``reviews.enriched`` and the stage's own tables rely on a key's records being
in the key's partition, in the order they were sent; recovery relies on a batch's delivery
naming its records' offsets. The reference is Faust's one-by-one ``Producer.send``.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.dev.stack import Stack, create_topics
from streams.faust_internals import ReviewPulseApp, kafka_producer
from streams.produce import Record, delivered, send_records
from streams.topic_io import read_to_end

pytestmark = pytest.mark.integration

PARTITIONS = 4


def read_all(bootstrap: str, topic: str) -> Iterator[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.wait.max.ms": 10})
    try:
        yield from read_to_end(consumer, [TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    finally:
        consumer.close()


def records_for(topic: str, *, seed: int) -> list[Record]:
    """Keys that spread over every partition, values from a few bytes to over a 16 KB batch,
    with a header or none."""
    rng = random.Random(seed)
    keys = [f"restaurant-{rng.randrange(40)}".encode() for _ in range(600)]
    sizes = [rng.choice((8, 300, 2_000, 20_000)) for _ in keys]
    # Outputs carry a trace header; changelog records carry none.
    return [Record(topic, key, f"{i}:".encode() + b"x" * size,
                   [("rp-trace", f"t{i}".encode())] if i % 3 else None)
            for i, (key, size) in enumerate(zip(keys, sizes, strict=True))]


async def test_batched_records_land_where_one_by_one_sends_put_them_in_order_at_their_offsets(
        stack: Stack) -> None:
    assert stack.broker is not None
    bootstrap = stack.broker.bootstrap
    batched, one_by_one = f"batched-{uuid.uuid4().hex[:8]}", f"single-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [batched, one_by_one], partitions=PARTITIONS)  # never auto-created
    app = ReviewPulseApp(f"produce-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
                         store="memory://", web_enabled=False)
    producer = app.producer
    await producer.start()
    try:
        records = records_for(batched, seed=7)
        def partition_of(topic: str, key: bytes | None) -> int:
            return producer.key_partition(topic, key).partition

        sent = await send_records(kafka_producer(producer), records, partition_of=partition_of)
        await delivered(sent)
        singles = [await producer.send(one_by_one, r.key, r.value, None, None, r.headers) for r in records]
        await asyncio.gather(*singles)
    finally:
        await producer.stop()
        app.consumer._thread.thread_loop.close()  # built with the consumer, never started

    def layout(topic: str) -> dict[int, list[tuple[bytes, bytes, Any, int]]]:
        by_partition: dict[int, list[tuple[bytes, bytes, Any, int]]] = defaultdict(list)
        for m in read_all(bootstrap, topic):
            by_partition[m.partition()].append((m.key(), m.value(), m.headers(), m.offset()))
        return by_partition

    got, reference = layout(batched), layout(one_by_one)
    assert sum(map(len, got.values())) == len(records)  # none lost, none twice
    assert len(got) == PARTITIONS  # the keys spread, so the grouping is exercised
    for partition, messages in reference.items():  # same partition per key, same order within it
        assert [m[:3] for m in got[partition]] == [m[:3] for m in messages]
    # Values over 16 KB fill aiokafka's batches: several batches per partition, each
    # delivery naming the offsets of its records, which follow one another.
    assert len(sent) > PARTITIONS
    for partition, messages in got.items():
        start = 0
        for batch in (b for b in sent if b.partition == partition):
            base = batch.delivery.result().offset
            offsets = [m[3] for m in messages[start:start + batch.count]]
            assert offsets == list(range(base, base + batch.count))
            start += batch.count
        assert start == len(messages)
