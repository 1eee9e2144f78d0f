"""What upstream producers do on a real Kafka: compress their batches, and write in transactions.

Both reach the worker through aiokafka's fetcher, below anything ReviewPulse decodes: a
codec it cannot read crash-looped every worker (issue 29), and records of an aborted
transaction must never count. Each test produces with confluent-kafka, as another
service would, and reads the outputs back with the official Avro deserializer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from test_pipeline_support import DLQ, ENRICHED, Outputs

from streams.topics import REVIEWS_CREATED
from tests.integration.conftest import ms
from tests.until import until

pytestmark = pytest.mark.integration

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
WINDOW_S, GRACE_S = 5, 2  # the session worker's (tests/integration/conftest.py)
AGGREGATES = "restaurants.aggregates"
PER_CODEC = 40


@pytest.fixture
def outputs(stack, worker) -> Iterator[Outputs]:
    out = Outputs(stack, topics=(ENRICHED, DLQ, AGGREGATES))
    yield out
    out.close()


def _producer(stack: Any, **conf: Any) -> Any:
    from confluent_kafka import Producer

    # linger lets each producer fill a batch, so the codec compresses many records at once
    return Producer({"bootstrap.servers": stack.broker.bootstrap, "linger.ms": 20, **conf})


@pytest.mark.embedded
def test_every_compression_codec_is_read_and_nothing_else_stalls(
        stack, worker, producer, outputs, review_factory):
    sent: dict[str, list[str]] = {}
    for codec in CODECS:
        kafka = _producer(stack, **{"compression.type": codec})
        reviews = [review_factory(text=f"Entrega rápida, comida ótima ({codec} {i})")
                   for i in range(PER_CODEC)]
        for review in reviews:
            kafka.produce(REVIEWS_CREATED, key=review["event_id"].encode(),
                          value=producer.review_bytes(review))
        assert kafka.flush(15) == 0
        sent[codec] = [r["event_id"] for r in reviews]

    everything = [e for ids in sent.values() for e in ids]
    records = outputs.wait_enriched(everything, timeout_s=60)
    per_event = Counter(r.value["event_id"] for r in records)
    assert set(per_event) == set(everything)
    assert max(per_event.values()) == 1, per_event.most_common(3)
    assert not outputs.where(DLQ, lambda v: v.get("key") and v["key"].decode(errors="replace") in everything)


def test_a_transactional_producer_counts_committed_records_once_and_aborted_ones_never(
        stack, worker, producer, outputs, review_factory, broker_kind):
    if broker_kind != "kafka":
        pytest.skip("Tansu has no transactions (DESIGN §7): this test is for Kafka")
    from confluent_kafka import Consumer, TopicPartition

    kafka = _producer(stack, **{"transactional.id": f"upstream-{time.monotonic_ns()}", "linger.ms": 1})
    kafka.init_transactions(15)
    restaurant = review_factory()["entity"]["restaurant_id"]
    committed: list[str] = []
    aborted: list[str] = []
    partitions: set[int] = set()
    reviews_by_id: dict[str, dict[str, Any]] = {}
    refetches_before = worker.log_path.read_text(errors="replace").count("missed offsets")
    # Small transactions, each closed by a marker: 12 committed, 6 aborted, interleaved.
    for n in range(18):
        batch = [review_factory(restaurant_id=restaurant) for _ in range(5)]
        kafka.begin_transaction()
        for review in batch:
            kafka.produce(REVIEWS_CREATED, key=restaurant.encode(), value=producer.review_bytes(review),
                          on_delivery=lambda err, msg: partitions.add(msg.partition()))
        reviews_by_id.update({r["event_id"]: r for r in batch})
        if n % 3 == 2:  # the last one too: the partition ends in aborted records and their marker
            kafka.abort_transaction(15)
            aborted += [r["event_id"] for r in batch]
        else:
            kafka.commit_transaction(15)
            committed += [r["event_id"] for r in batch]

    last_sent = time.time()
    records = outputs.wait_enriched(committed, timeout_s=60)
    assert Counter(r.value["event_id"] for r in records) == Counter(committed)

    # A quiet partition whose last offsets are markers still closes its windows on the wall
    # clock: each window of the restaurant gets its final aggregate, counting committed reviews.
    truth = Counter(window_of(reviews_by_id[e]["occurred_at"]) for e in committed)
    finals = until(lambda: aggregates_of(outputs, restaurant), timeout_s=WINDOW_S + GRACE_S + 15,
                   what=f"final aggregates of {sorted(truth)}", done=lambda got: set(got) >= set(truth))
    assert {w: finals[w] for w in truth} == dict(truth)
    closed_after_s = time.time() - last_sent

    # The worker's commit reaches the partition's end: it does not stick at the last marker.
    group = Consumer({"bootstrap.servers": stack.broker.bootstrap, "group.id": "reviewpulse",
                      "enable.auto.commit": False})
    (partition,) = partitions  # one key, one partition
    try:
        _, high = group.get_watermark_offsets(TopicPartition(REVIEWS_CREATED, partition), timeout=10)

        def committed_offset() -> int:
            (tp,) = group.committed([TopicPartition(REVIEWS_CREATED, partition)], timeout=10)
            return tp.offset

        until(committed_offset, timeout_s=30, what=f"the group's commit of {REVIEWS_CREATED}[{partition}] "
              f"reaching its end {high}", done=lambda offset: offset >= high)
    finally:
        group.close()
    outputs.poll()
    assert not outputs.enriched(aborted), "a record of an aborted transaction was counted"
    refetches = worker.log_path.read_text(errors="replace").count("missed offsets") - refetches_before
    print(f"\n18 transactions of 5 reviews (12 committed, 6 aborted): {len(committed)} enriched once, "
          f"0 aborted counted; last window closed {closed_after_s:.1f} s after the last send; "
          f"the stream sought back {refetches} times (point 5 takes a marker's offset for a miss)")


def window_of(occurred_ms: int) -> int:
    return occurred_ms - occurred_ms % (WINDOW_S * 1000)


def aggregates_of(outputs: Outputs, restaurant: str) -> dict[int, int]:
    """Reviews counted per tumbling window start, from the final aggregates of ``restaurant``."""
    outputs.poll()
    return {ms(a.value["window_start"]): a.value["reviews"]
            for a in outputs.where(AGGREGATES, lambda v: v["restaurant_id"] == restaurant
                                   and v["window_kind"] == "TUMBLING")}

