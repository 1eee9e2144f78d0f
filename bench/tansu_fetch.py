"""How long one record takes from produce to a consumer waiting at the log's end, on Tansu.

    .venv/bin/python -m bench.tansu_fetch [--waits 10,100,500] [--round-trips 300]

Kafka answers a fetch parked at the end of the log as soon as a record arrives (its fetch
purgatory); the round trip is then a few milliseconds whatever ``fetch.wait.max.ms`` is.
This prints the round trip (produce, flush, then the consumer's poll returns the record)
per fetch wait, one record at a time, and Tansu's CPU per round trip, so the embedded
broker's behaviour is a figure, not a guess. Starts its own Tansu and stops it by PID.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.measure import cpu_seconds, percentile
from streams.dev.broker import start_tansu


def round_trips(bootstrap: str, *, topic: str, wait_ms: int, count: int) -> list[float]:
    """Seconds from produce to the consumer holding the record, ``count`` times in a row."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tansu-fetch-bench",
                         "enable.auto.commit": False, "fetch.wait.max.ms": wait_ms})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        while consumer.consume(10_000, 0.5):  # to the end of what earlier rounds wrote
            pass
        seconds = []
        for _ in range(count):
            started = time.monotonic()
            producer.produce(topic, b"x" * 400)
            producer.flush()
            while not consumer.consume(1, 1.0):
                pass
            seconds.append(time.monotonic() - started)
        return seconds
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waits", default="10,100,500", help="fetch.wait.max.ms values, comma separated")
    parser.add_argument("--round-trips", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as log_dir:
        broker = start_tansu(log_dir=Path(log_dir))
        try:
            topic = "tansu-fetch-bench"
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})  # alive until the result
            admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
            for wait_ms in (int(w) for w in args.waits.split(",")):
                cpu_before = cpu_seconds(broker.proc.pid)
                seconds = round_trips(broker.bootstrap, topic=topic, wait_ms=wait_ms, count=args.round_trips)
                cpu_ms = (cpu_seconds(broker.proc.pid) - cpu_before) * 1000 / args.round_trips
                p50, p99 = percentile(seconds, 50), percentile(seconds, 99)
                print(f"fetch.wait.max.ms {wait_ms:>4}: produce -> consumed p50 {p50 * 1000:6.1f} ms, "
                      f"p99 {p99 * 1000:6.1f} ms; Tansu CPU {cpu_ms:.2f} ms per round trip", flush=True)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
