"""A partition sought back while the consumer thread fetches it is fetched again from there
(streams.faust point 5, issue 29's takeover stall).

Faust's aiokafka consumer runs on a thread of its own; point 5 asks for its seeks from the
worker's thread, while that thread may be handing out a batch of the same partition. aiokafka
is not thread-safe: a seek done in place was overwritten by the batch's end position, and
the partition's stream then waited for the records it missed for ever (after a takeover
under exactly-once, 1 run in about 9: the windows of the partitions taken over never
closed). Here a real aiokafka consumer on a thread of its own fetches a long partition
while the test's thread seeks it back, at random moments, through
:func:`streams.faust.commits.seek_on_thread`, the one way the worker seeks; every seek must
take. The same seeks done in place are counted too, and printed: what the fix is for.
"""

from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.dev.stack import Stack
from streams.faust.commits import seek_on_thread
from tests.integration.conftest import unique

pytestmark = pytest.mark.integration

RECORDS = 40_000  # about 40 fetches of aiokafka's 1 MiB default
SEEKS = 60
BACK = 20_000  # each seek goes this far back: a batch starting there is the seek taking


class FetchingThread:
    """A consumer on a thread and loop of its own, as Faust's ``ConsumerThread`` runs it, with
    the names :func:`seek_on_thread` uses (``thread_loop``, ``seek``, ``refetching``). It
    fetches the partition over and over (back to 0 at its end) and reports each batch's first
    and last offsets."""

    def __init__(self, bootstrap: str, tp: TopicPartition) -> None:
        self.bootstrap, self.tp = bootstrap, tp
        self.thread_loop = asyncio.new_event_loop()
        self.batches: queue.Queue[tuple[int, int]] = queue.Queue()
        self.errors: list[BaseException] = []  # what a seek from the wrong thread breaks
        self._stop = threading.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self.thread_loop.run_until_complete, args=(self._fetch(),),
                                        daemon=True)

    def __enter__(self) -> FetchingThread:
        self._thread.start()
        assert self._started.wait(30), "the consumer did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)
        self.thread_loop.close()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        self._consumer.seek(tp, offset)

    def refetching(self, tp: TopicPartition, token: int) -> None:
        """The worker's thread then watches for the seek's first records; not needed here."""

    async def _fetch(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        self._consumer = consumer
        await consumer.start()
        consumer.assign([self.tp])
        consumer.seek(self.tp, 0)
        self._started.set()
        try:
            while not self._stop.is_set():
                try:
                    got = (await consumer.getmany(self.tp, timeout_ms=100)).get(self.tp, [])
                except Exception as exc:
                    self.errors.append(exc)
                    continue
                if got:
                    self.batches.put((got[0].offset, got[-1].offset))
                    if got[-1].offset >= RECORDS - 1:
                        consumer.seek(self.tp, 0)
        finally:
            await consumer.stop()

    def next_batch(self) -> tuple[int, int]:
        try:
            return self.batches.get(timeout=10)
        except queue.Empty:
            raise AssertionError("the consumer thread handed out no batch for 10 s") from None

    def drain(self) -> None:
        while not self.batches.empty():
            self.batches.get_nowait()


@pytest.fixture(scope="module")
def long_partition(stack: Stack) -> Iterator[tuple[str, TopicPartition]]:
    assert stack.broker
    topic = unique("seek-race")
    admin = AdminClient({"bootstrap.servers": stack.broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": stack.broker.bootstrap, "linger.ms": 20})
    for n in range(RECORDS):
        producer.produce(topic, key=str(n).encode(), value=b"x" * 100)
        if n % 10_000 == 9_999:
            producer.flush(30)
    assert producer.flush(30) == 0
    yield stack.broker.bootstrap, TopicPartition(topic, 0)
    admin.delete_topics([topic])


def seeks_taken(fetching: FetchingThread, seek: Any) -> tuple[int, int]:
    """``SEEKS`` seeks back, each at a random moment of the fetch loop; how many took (a
    batch starting at the target followed) and how many were lost."""
    rng = random.Random(29)
    taken = lost = 0
    for _ in range(SEEKS):
        fetching.drain()
        _, last = fetching.next_batch()
        target = max(0, last - BACK)
        time.sleep(rng.uniform(0, 0.01))  # anywhere in the thread's fetch and hand-out
        try:
            seek(fetching.tp, target)
        except Exception as exc:  # in place, the seek itself can fail
            fetching.errors.append(exc)
            lost += 1
            continue
        if any(fetching.next_batch()[0] == target for _ in range(30)):
            taken += 1
        else:
            lost += 1
    return taken, lost


def test_every_seek_asked_from_the_worker_s_thread_takes(long_partition) -> None:
    bootstrap, tp = long_partition
    with FetchingThread(bootstrap, tp) as fetching:
        in_place = seeks_taken(fetching, fetching.seek)
        in_place_errors = len(fetching.errors)
    with FetchingThread(bootstrap, tp) as fetching:
        taken, lost = seeks_taken(fetching, lambda tp, offset: seek_on_thread(fetching, tp, offset))
        errors = list(fetching.errors)
    print(f"\n{SEEKS} seeks of a partition being fetched by a consumer thread: done in place "
          f"{in_place[0]} taken, {in_place[1]} lost ({in_place_errors} errors); "
          f"through seek_on_thread {taken} taken, {lost} lost ({len(errors)} errors)")
    assert (taken, lost, errors) == (SEEKS, 0, [])
