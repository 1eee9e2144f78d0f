"""The consumer thread and the fetch probes (streams.faust, points 1-3, 9 and 10)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.kafka_offsets import fetched_highwaters

logger = logging.getLogger(__name__)


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Partitions sought back by point 5, and the seek's token: the first records fetched
        # for them after the seek tell where the fetch again starts (commits.Deliveries).
        self._refetching: dict[TP, int] = {}

    def refetching(self, tp: TP, token: int) -> None:
        """``tp`` was just sought (on this thread's loop) by the seek ``token``."""
        self._refetching[tp] = token

    async def _fetch_records(self, *args: Any, **kwargs: Any) -> Any:
        """Point 5: the first records of a partition sought back start its fetch again. No
        other callback of this loop runs between the fetcher handing out records and here."""
        records = await super()._fetch_records(*args, **kwargs)
        if not self._refetching:  # nearly every fetch
            return records
        for tp, token in list(self._refetching.items()):
            fetched = records.get(tp)
            if fetched:
                del self._refetching[tp]
                self.consumer.deliveries.fetched_from(tp, token, fetched[0].offset)
        return records

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # type: ignore[attr-defined]
        # Point 9: records of aborted upstream transactions never count. Faust reads
        # read_committed only under its own exactly_once.
        consumer._isolation_level = "read_committed"
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        listed = await super()._highwaters(partitions)
        if listed and getattr(self.app, "stage_transactions", None) is not None:
            return await self._after_last_committed(listed)
        if not listed or self.consumer.in_transaction or not self.app.tansu:
            return listed  # point 2 is Tansu's alone: Kafka's ListOffsets is the log end
        probe = self._create_client_consumer(self.transport)  # no group: never joins
        probe._fetch_max_wait_ms = 10
        await probe.start()
        try:
            return await fetched_highwaters(probe, listed)
        finally:
            await probe.stop()


    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        logger.info("Committed offsets sought to: %s", ", ".join(
            f"{tp.topic}:{tp.partition}={offset}" for tp, offset in sorted(committed.items())
            if not self.consumer._is_changelog_tp(tp)))
        uncommitted = [tp for tp, offset in committed.items()
                       if not offset and not self.consumer._is_changelog_tp(tp)]
        if uncommitted:
            await self.call_thread(self._ensure_consumer().seek_to_beginning, *uncommitted)
        return committed


    async def _after_last_committed(self, listed: Mapping[TP, int]) -> Mapping[TP, int]:
        """Point 12 (exactly-once): a changelog written in transactions ends with a commit
        marker, an offset no reader gets, and Faust's recovery waits for the offset before the
        high watermark: for changelogs, one past the last record a read_committed reader gets.
        The partitions' transactional ids are taken first (their earlier owner fenced and its
        open transaction aborted), so no commit can land past what is read here."""
        changelogs = {tp: end for tp, end in listed.items() if self.consumer._is_changelog_tp(tp) and end > 0}
        if not changelogs:
            return listed
        txns = self.app.stage_transactions
        # The stage's partitions this worker owns now (never a global table's or a standby's:
        # taking an id another worker holds fences that worker).
        owned = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == txns.input_topic}
        # The producers live on the worker's loop; this runs on the consumer thread's.
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(txns.assign(owned), self.parent_loop))
        probe = self._create_client_consumer(self.transport)  # no group: never joins
        probe._fetch_max_wait_ms = 10
        probe._isolation_level = "read_committed"
        await probe.start()
        try:
            found = {tp: await _after_last_record(probe, tp, end) for tp, end in changelogs.items()}
        finally:
            await probe.stop()
        logger.info("Changelog ends read_committed (point 12): %s", ", ".join(
            f"{tp.topic}:{tp.partition}={found[tp]}/{end}" for tp, end in sorted(changelogs.items())))
        return {**listed, **found}


async def _after_last_record(probe: AIOKafkaConsumer, tp: TP, end: int) -> int:
    """One past the last record below ``end`` a read_committed reader gets (0: none), read back
    from the end in growing windows: a partition's tail holds markers and aborted records."""
    target = TopicPartition(tp.topic, tp.partition)
    probe.assign([target])
    window = 64
    while True:
        start = max(0, end - window)
        probe.seek(target, start)
        last = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CHANGELOG_END_TIMEOUT_S
        while await probe.position(target) < end and loop.time() < deadline:
            batches = await probe.getmany(target, timeout_ms=100)
            for message in batches.get(target, ()):
                if message.offset < end:
                    last = message.offset
            lso = probe.last_stable_offset(target)
            if lso is not None and lso <= await probe.position(target) and not batches:
                break  # nothing more a read_committed reader gets
        if last is not None or start == 0:
            return 0 if last is None else last + 1
        window *= 16


CHANGELOG_END_TIMEOUT_S = 10.0  # reading one partition's tail; a slower broker is a failed start
EMPTY_PROBE_TIMEOUT_S = 2.0  # one fetch round trip; a broker slower than this is asked again later


async def holds_no_record(app: Any, tp: TP, *, start: int, end: int) -> bool | None:
    """Whether offsets ``[start, end)`` of ``tp`` hold no record a read_committed reader gets:
    only transaction markers and aborted records (point 10). None when unsure: the broker not
    answering is a reason to ask again later, never to stop the worker."""
    thread = app.consumer._thread
    probe = thread._create_client_consumer(thread.transport)  # no group: never joins
    probe._fetch_max_wait_ms = 10
    probe._isolation_level = "read_committed"
    try:
        await probe.start()
        return await _no_record_between(probe, tp, start=start, end=end)
    except KafkaError as exc:
        logger.info("Could not probe %s:%d for markers: %r", tp.topic, tp.partition, exc)
        return None
    finally:
        await probe.stop()


async def _no_record_between(probe: AIOKafkaConsumer, tp: TP, *, start: int, end: int) -> bool | None:
    target = TopicPartition(tp.topic, tp.partition)
    probe.assign([target])
    probe.seek(target, start)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EMPTY_PROBE_TIMEOUT_S
    while loop.time() < deadline:
        for messages in (await probe.getmany(target, timeout_ms=100, max_records=1)).values():
            if messages:
                return bool(messages[0].offset >= end)
        if await probe.position(target) >= end:  # the fetch skipped only markers and aborts
            return True
    return None


def last_fetched_ms(app: Any, tp: TP) -> int | None:
    """When a fetch response last gave ``tp``'s high watermark (epoch ms; aiokafka's
    ``last_poll_timestamp``); None before the first one or once ``tp`` is not assigned.
    A caught-up partition is fetched every fetch wait, so an old answer means the broker is
    not answering, and the high watermark known may be stale (agents/ticks.py)."""
    try:
        fetched: int | None = app.consumer._thread._ensure_consumer().last_poll_timestamp(tp)
    except Exception:  # not assigned, or the consumer is not started
        return None
    return fetched


def committed_offset(app: Any, tp: TP) -> int | None:
    """The committed offset (next to read) the consumer knows for ``tp``: the one it sought
    to at assignment or its last commit; None when the partition has none."""
    offset: int | None = app.consumer._committed_offset.get(tp)
    return offset
