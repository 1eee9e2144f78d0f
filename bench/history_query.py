"""How long a restaurant's history takes to read back from ``restaurants.aggregates`` (issue 33.3).

Writes 7 days of 60 s tumbling aggregates (10,080 windows) for each of ``--restaurants``
restaurants on one partition, with Kafka timestamps where the worker would have sent them,
then reads one restaurant's windows for the last hour, 24 hours and 7 days the way the web
view does (:mod:`streams.window_history`: ``offsets_for_times`` on its partition, its key's
records decoded), beside the peer a naive reader is: every partition from the beginning.

    PYTHONPATH=$PWD python -m bench.history_query [--broker kafka|tansu] [--restaurants 20]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from streams.codecs import AvroCodecs, plain_record
from streams.dev.broker import BROKER_KINDS, start_broker
from streams.dev.stack import start_registry
from streams.settings import load_settings
from streams.topic_io import read_to_end, reader_consumer
from streams.topics import AGGREGATES
from streams.window_history import scan, select
from tables.values import PaneAggregate

MINUTE_MS = 60_000
DAYS = 7
PARTITIONS = 4


def _same_partition(names: list[str], count: int) -> tuple[list[str], int]:
    """``count`` restaurant ids on the first id's partition, and that partition: aiokafka's
    default partitioner on the id's bytes, as decode sends them (tables.routing)."""
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    parts = list(range(PARTITIONS))
    target = partitioner(names[0].encode(), parts, parts)
    return [n for n in names if partitioner(n.encode(), parts, parts) == target][:count], int(target)


def write(settings: Any, restaurants: list[str], *, partition: int, end_ms: int) -> int:
    """Every restaurant's 7 days of windows, in time order, on ``partition``."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    # Kept forever: the records are up to 7 days old, Kafka's default retention.
    topic = NewTopic(AGGREGATES, PARTITIONS, 1, config={"retention.ms": "-1"})
    admin.create_topics([topic])[AGGREGATES].result()
    codecs = AvroCodecs(settings)
    asyncio.run(codecs.start())
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 50,
                         "batch.size": 1_000_000, "compression.type": "lz4"})
    first = end_ms - DAYS * 24 * 60 * MINUTE_MS
    pane = PaneAggregate()  # a window of twelve reviews, as the stage closes it
    for n in range(12):
        pane.add_first_sight(event_id=f"e{n}", rating=1 + n % 5, label="POSITIVE" if n % 2 else "NEGATIVE",
                             score=0.5 if n % 2 else -0.5, categories=("delivery_time",),
                             processing_lag_ms=80 + n, event_age_ms=120 + n)
    written = 0
    for start in range(first, end_ms, MINUTE_MS):
        for restaurant in restaurants:
            record = pane.to_record(restaurant_id=restaurant, window_kind="TUMBLING", window_start_ms=start,
                                    window_end_ms=start + MINUTE_MS, closed_at_ms=start + MINUTE_MS + 10_500)
            value = codecs.encode("RestaurantWindowAggregate", record)
            producer.produce(AGGREGATES, key=restaurant.encode(), value=value, partition=partition,
                             timestamp=start + MINUTE_MS + 10_500)
            written += 1
            if written % 50_000 == 0:
                producer.flush(60)
        producer.poll(0)
    producer.flush(120)
    return written


def history(settings: Any, restaurant: str, *, partition: int, from_ms: int,
            to_ms: int) -> tuple[int, int, float]:
    """(windows, records read, seconds) of one read as the web view does it."""
    started = time.perf_counter()
    found = scan(settings, restaurant, partition=partition, from_ms=from_ms, to_ms=to_ms,
                 longest_window_ms=settings.hopping_size_s * 1000)
    windows = _windows(settings, found.values, from_ms=from_ms, to_ms=to_ms)
    return len(windows), found.records_read, time.perf_counter() - started


def _windows(settings: Any, values: list[bytes], *, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
    """The values decoded with the worker's codecs and selected as the web view does."""
    codecs = AvroCodecs(settings)

    async def decode() -> list[dict[str, Any]]:
        try:
            return [plain_record(await codecs.decode("RestaurantWindowAggregate", v)) for v in values]
        finally:
            await codecs.stop()

    return select(asyncio.run(decode()), from_ms=from_ms, to_ms=to_ms, kind="TUMBLING")


def naive(settings: Any, restaurant: str, *, from_ms: int, to_ms: int) -> tuple[int, int, float]:
    """The peer: every partition from the beginning, keeping the restaurant's records."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    started = time.perf_counter()
    consumer = reader_consumer(settings, "history-naive")
    key, values, read = restaurant.encode(), [], 0
    try:
        for message in read_to_end(consumer, [TopicPartition(AGGREGATES, p, OFFSET_BEGINNING)
                                              for p in range(PARTITIONS)]):
            read += 1
            if message.key() == key:
                values.append(message.value())
    finally:
        consumer.close()
    windows = _windows(settings, values, from_ms=from_ms, to_ms=to_ms)
    return len(windows), read, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=BROKER_KINDS, default="kafka")
    parser.add_argument("--restaurants", type=int, default=20, help="restaurants on the measured partition")
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-history-"))
    broker = start_broker(args.broker, log_dir=log_dir)
    registry = None
    try:
        registry = start_registry(broker, log_dir=log_dir)
        settings = load_settings(kafka_bootstrap_servers=broker.bootstrap, schema_registry_url=registry.url,
                                 topic_partitions=PARTITIONS)
        restaurants, partition = _same_partition(
            [f"rest-{i:04d}" for i in range(args.restaurants * PARTITIONS * 3)], args.restaurants)
        end_ms = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
        t0 = time.perf_counter()
        written = write(settings, restaurants, partition=partition, end_ms=end_ms)
        print(f"{args.broker}: wrote {written:,} aggregates ({len(restaurants)} restaurants x "
              f"{DAYS * 24 * 60:,} windows) in {time.perf_counter() - t0:.1f} s")
        for label, span_ms in (("1 h", 3_600_000), ("24 h", 86_400_000), ("7 days", DAYS * 86_400_000)):
            n, read, seconds = history(settings, restaurants[0], partition=partition,
                                       from_ms=end_ms - span_ms, to_ms=end_ms)
            print(f"  {label:>6}: {n:>6,} windows, {read:>9,} records read, {seconds * 1000:8.0f} ms")
        n, read, seconds = naive(settings, restaurants[0], from_ms=end_ms - 3_600_000, to_ms=end_ms)
        print(f"  naive peer, 1 h from a scan of every partition: {n:,} windows, {read:,} records read, "
              f"{seconds * 1000:.0f} ms")
    finally:
        if registry is not None:
            registry.stop()
        broker.stop()


if __name__ == "__main__":
    main()
