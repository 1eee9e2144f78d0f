"""Smoke test of the Kafka Streams peer on a broker you started: its counts must add up.

    .venv/bin/python -m bench.kstreams_smoke --bootstrap 127.0.0.1:PORT [--events 20000]

Produces ``--events`` Confluent-framed reviews (fastavro, schema id 1: the peer reads the
writer schema from the .avsc, not a registry) to an empty ``reviews.created``, runs the
peer over them and prints its JSON line. Then checks its output: every window of the
produced restaurants emitted once (``suppress(untilWindowCloses)``), the counts summing
to ``--events``.

A window closes when stream time passes its end plus the grace, so the run ends with
"closer" reviews one window plus grace ahead (restaurants ``zz-closer-*``, 16 per
partition so that every repartition partition, hence every count task, sees one). They
are produced only once the repartition topic holds every review: produced earlier, a
closer could cross the hop before the reviews of another input partition and make them
late (dropped).
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import avro_schemas
from bench.kstreams_peer import COMMIT_INTERVAL_MS, PeerError, start_peer
from bench.traffic import word
from schema_registry.serde import encode_framed, parse_schema
from streams.dev.procs import stop
from streams.dev.sample import RATING_WEIGHTS, TEXTS
from streams.dev.stack import create_topics
from streams.topic_io import read_to_end
from streams.topics import REVIEWS_CREATED

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_ID = 1  # any id: the peer takes the first id it sees as its .avsc's
CLOSERS_PER_PARTITION = 16  # a partition misses all 16 with odds (1 - 1/P)^(16P): ~1e-7 at P=4
REPARTITION = "by-restaurant-repartition"


def review(rng: random.Random, n: int, *, restaurant: str, occurred_at_ms: int) -> dict[str, Any]:
    """A review shaped like bench.traffic's (same texts, a unique suffix)."""
    rating = rng.choices(list(RATING_WEIGHTS), weights=list(RATING_WEIGHTS.values()))[0]
    language, text = rng.choice(TEXTS[rating])
    return {
        "event_id": f"smoke_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}", "event_version": 1,
        "occurred_at": occurred_at_ms,
        "entity": {"review_id": f"rv_{rng.getrandbits(40):x}", "order_id": None,
                   "user_id": f"usr_{rng.randint(1, 50_000)}", "restaurant_id": restaurant,
                   "rating": rating, "text": f"{text} ref {word(n)}",
                   "language": "pt-BR" if language == "pt" else "en"},
        "metadata": {"source": "kstreams-smoke", "trace_id": f"trc_{rng.getrandbits(48):x}", "retries": 0},
    }


def produce(producer: Any, topic: str, values: list[dict[str, Any]]) -> None:
    schema = parse_schema(avro_schemas.schema_text("ReviewCreated"))
    for value in values:
        payload = encode_framed(value, schema_id=SCHEMA_ID, schema=schema)
        while True:
            try:
                producer.produce(topic, key=value["entity"]["review_id"].encode(), value=payload)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(60):
        raise RuntimeError("the producer did not deliver every review in 60 s")


def high_watermarks(consumer: Any, topic: str, *, timeout_s: float = 15.0) -> int:
    """Records in ``topic`` (0 if it does not exist yet); retries while a new topic elects leaders."""
    from confluent_kafka import KafkaException, TopicPartition

    deadline = time.monotonic() + timeout_s
    while True:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        try:
            return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                       for p in metadata.partitions)
        except KafkaException as exc:  # NOT_LEADER_FOR_PARTITION just after creation
            if not exc.args[0].retriable() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def final_counts(bootstrap: str, topic: str) -> dict[str, int]:
    """Every record of the output topic: ``"restaurant|window_start_ms" -> count`` (big-endian long)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"kstreams-smoke-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignments = [TopicPartition(topic, p, 0) for p in partitions]
        counts: dict[str, int] = {}
        for message in read_to_end(consumer, assignments):
            key = message.key().decode()
            if key in counts:
                raise AssertionError(f"window {key} emitted twice: suppress(untilWindowCloses) emits once")
            counts[key] = int.from_bytes(message.value(), "big", signed=True)
        return counts
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.kstreams_smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="a Kafka 4.x broker (host:port)")
    parser.add_argument("--topic", default=REVIEWS_CREATED, help="the input topic; must be empty")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--restaurants", type=int, default=200)
    parser.add_argument("--window-size-s", type=int, default=60)
    parser.add_argument("--grace-s", type=int, default=60,
                        help="at least the input's event-time span (20 s by default): the hop may "
                        "reorder reviews by up to that, and a later one would be dropped as late")
    parser.add_argument("--spacing-ms", type=int, default=1,
                        help="event time between two reviews (1: 20,000 reviews span 20 s)")
    parser.add_argument("--commit-interval-ms", type=int, default=COMMIT_INTERVAL_MS)
    parser.add_argument("--timeout-s", type=float, default=180.0)
    args = parser.parse_args(argv)

    from confluent_kafka import Consumer, Producer

    topic = args.topic
    create_topics(args.bootstrap, [topic], partitions=args.partitions)
    probe = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "kstreams-smoke-probe"})
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5,
                         "queue.buffering.max.messages": 1_000_000})
    try:
        if high_watermarks(probe, topic):
            raise SystemExit(f"{topic} already holds records: the smoke test needs an empty topic")
        rng = random.Random(29)
        names = [f"rest-{i:03d}" for i in range(1, args.restaurants + 1)]
        started = time.monotonic()
        first_ms = int(time.time() * 1000)
        produce(producer, topic, [review(rng, n, restaurant=rng.choice(names),
                                         occurred_at_ms=first_ms + n * args.spacing_ms)
                                  for n in range(args.events)])
        print(f"produced {args.events} framed reviews to {topic} ({args.partitions} partitions) "
              f"in {time.monotonic() - started:.1f} s", flush=True)

        closers = CLOSERS_PER_PARTITION * args.partitions
        app_id = f"kstreams-smoke-{uuid.uuid4().hex[:8]}"
        log_dir = ROOT / "artifacts" / "bench" / f"kstreams-smoke-{time.strftime('%Y%m%d-%H%M%S')}"
        peer = start_peer(bootstrap=args.bootstrap, expected=args.events + closers, log_dir=log_dir,
                          input_topic=topic, application_id=app_id, window_size_s=args.window_size_s,
                          grace_s=args.grace_s, timeout_s=args.timeout_s,
                          commit_interval_ms=args.commit_interval_ms)
        try:
            deadline = time.monotonic() + args.timeout_s
            while high_watermarks(probe, f"{app_id}-{REPARTITION}") < args.events:
                if peer.proc.poll() is not None or time.monotonic() > deadline:
                    raise PeerError(f"the repartition topic never held {args.events} records; "
                                    f"log: {peer.log_path}")
                time.sleep(0.2)
            # Past the last window's end plus grace, and not much more: Kafka 4 brokers refuse
            # timestamps over an hour ahead (log.message.timestamp.after.max.ms; the peer writes
            # the closers' event time into its repartition topic).
            last_ms = first_ms + args.events * args.spacing_ms
            ahead_ms = last_ms + (args.window_size_s + args.grace_s + 1) * 1000
            produce(producer, topic, [review(rng, args.events + i, restaurant=f"zz-closer-{i:03d}",
                                             occurred_at_ms=ahead_ms) for i in range(closers)])
            result = peer.wait()
        except BaseException:
            stop(peer.proc)  # type: ignore[arg-type]  # by PID, whatever stopped the run
            raise
    finally:
        probe.close()

    print(json.dumps(result.raw))
    counts = final_counts(args.bootstrap, peer.output_topic)
    reviewed = {k: v for k, v in counts.items() if not k.startswith("zz-closer-")}
    total = sum(reviewed.values())
    restaurants = {k.split("|")[0] for k in reviewed}
    print(f"output {peer.output_topic}: {len(reviewed)} closed windows of {len(restaurants)} restaurants, "
          f"counts sum {total} for {args.events} produced ({len(counts) - len(reviewed)} closer windows "
          f"emitted: 0 expected, they never close); {result.events} records reached the count "
          f"({args.events} + {closers} closers); dropped {result.dropped_records}; log {result.log_path}")
    if total != args.events or len(counts) != len(reviewed):
        raise SystemExit("FAILED: the peer's final counts do not add up to what was produced")
    print("OK")


if __name__ == "__main__":
    main()
