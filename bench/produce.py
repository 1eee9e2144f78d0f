"""CPU per record sent: Faust's ``Producer.send`` one by one against ``streams.produce``.

    .venv/bin/python -m bench.produce [--records 50000] [--rounds 3]

Starts Tansu alone, then sends the same records (400-byte values, 50 keys over 4
partitions, a trace header: the shape of ``reviews.enriched``) in chunks of 1,000, as the
stage sends a batch's outputs, both ways, and prints this process's CPU per record (user +
system, from ``getrusage``), each chunk awaited before the next. Figures, no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from streams.dev.broker import start_tansu
from streams.dev.stack import create_topics
from streams.faust_internals import ReviewPulseApp, kafka_producer
from streams.produce import Record, delivered, send_records

TOPIC = "bench-produce"
CHUNK = 1_000  # about a0's stage batch


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(bootstrap: str, *, n: int, rounds: int) -> None:
    app = ReviewPulseApp("bench-produce", broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False)
    producer = app.producer
    await producer.start()
    records = [Record(TOPIC, f"restaurant-{i % 50}".encode(), bytes(400),
                      [("rp-trace", f"{i:016x}".encode())]) for i in range(n)]

    async def one_by_one(chunk: list[Record]) -> Awaitable[Any]:
        return asyncio.gather(*[await producer.send(r.topic, r.key, r.value, None, None, r.headers)
                                for r in chunk])

    async def batched(chunk: list[Record]) -> Awaitable[Any]:
        return delivered(await send_records(kafka_producer(producer), chunk, partition_of=lambda topic, key:
                                            producer.key_partition(topic, key).partition))

    ways: dict[str, Callable[[list[Record]], Awaitable[Awaitable[Any]]]] = {
        "Producer.send, one by one": one_by_one, "streams.produce.send_records": batched}
    try:
        await (await producer.send(TOPIC, b"warm", b"up", None, None, None))
        for round_ in range(1, rounds + 1):
            for name, way in ways.items():
                cpu0, wall0 = cpu_s(), time.perf_counter()
                for start in range(0, n, CHUNK):
                    await (await way(records[start:start + CHUNK]))
                cpu, wall = cpu_s() - cpu0, time.perf_counter() - wall0
                print(f"round {round_}  {name:32} {cpu / n * 1e6:6.2f} us CPU a record"
                      f"  ({n / wall:,.0f} records/s)")
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-produce-") as log_dir:
        broker = start_tansu(log_dir=Path(log_dir))
        try:
            create_topics(broker.bootstrap, [TOPIC], partitions=4)
            asyncio.run(run(broker.bootstrap, n=args.records, rounds=args.rounds))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
