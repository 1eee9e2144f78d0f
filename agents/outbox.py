"""Exactly one final aggregate and alert per id, on a broker without transactions.

The restaurant stage sends a closed window's aggregate, waits for the acknowledgement,
then writes the closure to its changelog. A crash between the two would close the
window again after the restart and send a second aggregate. To prevent that:

* aggregates and alerts of state partition *p* go to partition *p* of their topics, with
  their deterministic id in an ``rp-id`` header;
* each table flush records, per partition, the output offsets reached so far (the
  ``checkpoint_key`` of :mod:`streams.protocol` in the closures table, written with the
  closures themselves);
* the first time a worker processes partition *p* (after start or a rebalance), it reads
  the outputs from those offsets to the end and remembers the ids it finds: closing
  them again sends nothing. Re-closing happens when replayed ticks move the watermark
  past those windows again, which may be several batches later, so the ids are kept
  for the life of the process (a handful per crash).

The scan is short: it covers at most what was sent between one flush and a crash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka_offsets import fetched_highwaters
from streams.logs import event as log_event
from streams.protocol import H_ID

# (partition, {topic: start offset}) -> (ids found from there to the end, {topic: end offset})
ScanOutputs = Callable[[int, Mapping[str, int]], Awaitable[tuple[set[str], dict[str, int]]]]


class Outbox:
    """Which final aggregates and alerts were already sent; ``scan`` reads the output topics."""

    def __init__(self, topics: Iterable[str], *, scan: ScanOutputs) -> None:
        self.topics = tuple(topics)
        self._scan = scan
        self.recovered: set[int] = set()
        self.sent_before: dict[int, set[str]] = {}  # ids found in the outputs at recovery
        self.next_offsets: dict[tuple[str, int], int] = {}

    async def recover(self, partition: int, checkpoint: Mapping[str, int] | None) -> None:
        """Collect the ids already in the outputs of ``partition`` since ``checkpoint``."""
        starts = {topic: int((checkpoint or {}).get(topic, 0)) for topic in self.topics}
        found, ends = await self._scan(partition, starts)
        for topic in self.topics:
            self.next_offsets[(topic, partition)] = ends.get(topic, starts[topic])
        self.sent_before.setdefault(partition, set()).update(found)
        self.recovered.add(partition)
        if found:
            log_event("outbox_recovered", partition=partition, already_sent=len(found))

    def already_sent(self, partition: int, record_id: str) -> bool:
        return record_id in self.sent_before.get(partition, ())

    def acknowledged(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        if offset + 1 > self.next_offsets.get(key, 0):
            self.next_offsets[key] = offset + 1

    def checkpoint(self, partition: int) -> dict[str, int] | None:
        """The offsets to store with this flush, or None when nothing moved."""
        offsets = {t: self.next_offsets[(t, partition)] for t in self.topics
                   if (t, partition) in self.next_offsets}
        return offsets or None

    def reset(self) -> None:
        """After a rebalance: partitions may have been processed elsewhere meanwhile.

        Ids found earlier are kept: a window they belong to may not have closed again yet.
        """
        self.recovered.clear()


def kafka_scanner(consumer_config: Mapping[str, Any]) -> ScanOutputs:
    """The production ``scan``: a group-less aiokafka consumer reads the ``rp-id`` headers."""

    async def scan(partition: int, starts: Mapping[str, int]) -> tuple[set[str], dict[str, int]]:
        tps = {TopicPartition(topic, partition): start for topic, start in starts.items()}
        # read_committed: under exactly-once an aggregate of an aborted transaction was never sent.
        consumer = AIOKafkaConsumer(enable_auto_commit=False, fetch_max_wait_ms=10,
                                    isolation_level="read_committed", **consumer_config)
        await consumer.start()
        found: set[str] = set()
        try:
            ends = await fetched_highwaters(consumer, tps)
            for tp, start in tps.items():
                if start < ends[tp]:
                    consumer.seek(tp, start)
            remaining = {tp for tp in tps if tps[tp] < ends[tp]}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, messages in batches.items():
                    for message in messages:
                        for key, value in message.headers or ():
                            if key == H_ID and value:
                                found.add(value.decode())
                        if message.offset + 1 >= ends[tp]:
                            remaining.discard(tp)
                if not batches:
                    break  # nothing more to read within the timeout: the end was reached
        finally:
            await consumer.stop()
        return found, {tp.topic: ends[tp] for tp in tps}

    return scan
