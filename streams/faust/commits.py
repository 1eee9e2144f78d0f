"""What a commit may pass, and offsets a stream missed fetched again (streams.faust,
points 4, 5 and 11)."""

from __future__ import annotations

import itertools
import logging
import time
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from typing import Any, NamedTuple

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock

from streams.faust.transport import ConsumerThread

logger = logging.getLogger(__name__)


def commit_position(acked: list[int], head: int) -> tuple[int, int]:
    """Where a partition's commit may go: the first offset from ``head`` not in ``acked``.

    ``acked`` is sorted; ``head`` is the lowest offset whose outcome may still be owed.
    Returns (position, how many leading entries of ``acked`` it consumed): offsets below the
    position are done, and the position is what Kafka stores as committed (the next to read).
    """
    position, used = head, 0
    for offset in acked:
        if offset > position:
            break
        position = max(position, offset + 1)
        used += 1
    return position, used


class _Delivered(faust.Sensor):
    """Tells the consumer of every offset delivered to a stream (point 5).

    Streams inline Faust's message tracking and call only the sensors, so a sensor is how
    the consumer learns which offsets a stream actually got.
    """

    def __init__(self, consumer: Consumer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.consumer = consumer

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        self.consumer.on_delivered(tp, offset, message)


class Delivery(NamedTuple):
    """What one delivery tells: where to seek back to (and the seek's token, which the consumer
    thread reports back with the first offset it fetched from there), offsets found to hold no
    record, and whether this record will be delivered again (by the fetch from the seek)."""

    seek_to: int | None = None
    done: range = range(0)
    again: bool = False
    token: int = 0
    began: bool = False  # this record starts the fetch again
    sought_before: bool = False  # seek_to repeats a seek whose fetch never began


NOTHING_TO_DO = Delivery()
COMES_AGAIN = Delivery(again=True)
# The records fetched before a seek reach the stream within a batch or two (Faust's buffer
# and one fetch): a fetch from the target not begun this long after, the seek is asked again.
SEEK_AGAIN_AFTER_S = 5.0


class Deliveries:
    """What each partition's stream got since its assignment, and what it must fetch again.

    Pure bookkeeping (point 5), so it is unit-tested without a broker. ``heads`` holds the
    lowest offset possibly owed, ``refetch`` the offset a partition was sought back to until
    the records fetched from there arrive.
    """

    def __init__(self) -> None:
        self.heads: dict[TP, int] = {}
        self.refetch: dict[TP, int] = {}
        self._next: dict[TP, int] = {}  # the offset the stream should get next
        self._sought_at: dict[TP, float] = {}  # when the refetch's seek was last asked for
        self._token: dict[TP, int] = {}  # the refetch's last seek
        self._tokens = itertools.count(1)
        # (token, offset): the first offset the consumer thread fetched after that seek. Written
        # by the consumer thread (one dict item: atomic), read by the worker's.
        self._fetched_from: dict[TP, tuple[int, int]] = {}

    def forget(self, tp: TP) -> None:
        for known in (self.heads, self.refetch, self._next, self._sought_at, self._token, self._fetched_from):
            known.pop(tp, None)

    def fetched_from(self, tp: TP, token: int, offset: int) -> None:
        """The consumer thread's first records of ``tp`` after the seek ``token`` start at ``offset``."""
        self._fetched_from[tp] = (token, offset)

    def delivered(self, tp: TP, offset: int, *, committed: int | None, now: float | None = None) -> Delivery:
        """Note ``offset`` delivered to its stream, and say what follows from it.

        ``committed`` is the partition's committed offset, the first to expect after assignment;
        a partition without one is read from its beginning (``auto_offset_reset="earliest"``),
        so 0 is expected. A stream's first record is not proof of where it starts: a record
        fetched before the seek to the beginning can arrive first, and taken as the start it
        let the commit pass every offset below it (a worker killed before its first commit,
        restarted: 75 reviews never decoded, 71 owed ones never enriched again).
        A missed record is found when a later one of its partition reaches the stream (on
        by-restaurant, a tick does within a tick interval); until then its offset holds the
        commit. The partition is sought back to it, and the fetch from there begins with the
        first offset the consumer thread fetched after the seek (:meth:`fetched_from`): every
        record before that in the stream was fetched before the seek and comes again. If that
        offset is above the target, the offsets between hold no records (compaction,
        transaction markers). The stream's own order cannot tell: records fetched before the
        seek can repeat offsets (Faust seeks a partition to its commit twice after a
        rebalance, and its fetch loop passes both copies), and a repeated offset taken for the
        fetch's start declared 171 offsets empty (issue 29: 45 reviews never folded nor
        enriched after a takeover). A fetch not begun ``SEEK_AGAIN_AFTER_S`` (``now``,
        monotonic seconds, the clock's when not given) after its seek is asked for again: its
        first records may have been dropped on their way, or the seek lost.
        """
        expected = self._next.get(tp)
        if expected is None:
            expected = min(committed or 0, offset)
            self.heads[tp] = expected
        target = self.refetch.get(tp)
        if target is not None:
            token = self._token[tp]
            fetched_from = self._fetched_from.get(tp)
            if fetched_from is not None and fetched_from[0] == token and offset == fetched_from[1]:
                del self.refetch[tp]  # the records fetched from the target have begun
                self._next[tp] = offset + 1
                return Delivery(done=range(target, offset), began=True)
            now = time.monotonic() if now is None else now
            if now - self._sought_at[tp] < SEEK_AGAIN_AFTER_S:
                return COMES_AGAIN
            return self._seek(tp, target, now=now, again=True)
        if offset > expected:  # the stream never got [expected, offset)
            self.refetch[tp] = expected
            return self._seek(tp, expected, now=time.monotonic() if now is None else now)
        self._next[tp] = max(expected, offset + 1)
        return NOTHING_TO_DO

    def _seek(self, tp: TP, target: int, *, now: float, again: bool = False) -> Delivery:
        self._sought_at[tp] = now
        token = self._token[tp] = next(self._tokens)
        return Delivery(seek_to=target, again=True, token=token, sought_before=again)


class _ReadOffsets(defaultdict):  # type: ignore[type-arg]
    """Faust's read offsets: its fetch loop drops a record below its partition's entry.

    A partition being fetched again (point 5) reads as the offset it was sought back to
    while the records fetched before the seek go by, so the records asked for are not
    dropped as already read.
    """

    def __init__(self, refetch: Mapping[TP, int]) -> None:
        super().__init__(lambda: None)
        self.refetch = refetch

    def __getitem__(self, tp: TP) -> int | None:
        value: int | None = super().__getitem__(tp)
        target = self.refetch.get(tp)
        if target is not None and (value is None or value > target):
            return target
        return value


class Consumer(faust_aiokafka.Consumer):
    """Commits never pass an offset a stream did not ack, and offsets a stream never got are
    fetched again (points 4 and 5 above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deliveries = Deliveries()
        self._read_offset = _ReadOffsets(self.deliveries.refetch)
        # Records delivered while their partition is fetched again: they come again, in order.
        self.superseded: weakref.WeakSet[Any] = weakref.WeakSet()
        self.app.sensors.add(_Delivered(self))
        # Topics whose offsets go in Kafka transactions instead (exactly-once: the stage's
        # input, streams.transactions): Faust's commits must never pass a batch whose
        # transaction may still abort.
        self.transactional_topics: frozenset[str] = frozenset()

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:  # unknown head: nothing is committed for them until reassigned
            self.deliveries.forget(tp)
        await super().on_partitions_revoked(revoked)

    def on_delivered(self, tp: TP, offset: int, message: Any) -> None:
        delivery = self.deliveries.delivered(tp, offset, committed=self._committed_offset.get(tp))
        if delivery is NOTHING_TO_DO:  # nearly every delivery
            return
        if delivery.done:
            with ack_lock:  # point 11
                self._acked[tp].extend(delivery.done)
        if delivery.began:
            logger.info("The fetch of %s:%d again began at %d%s", tp.topic, tp.partition, offset,
                        f": offsets {delivery.done.start}-{delivery.done.stop - 1} hold no record"
                        if delivery.done else "")
        if delivery.again:
            self.superseded.add(message)
        if delivery.seek_to is None:
            return
        if delivery.sought_before:
            logger.warning("The fetch of %s:%d again from %d has not begun %.0f s after its seek "
                           "(offset %d came): seeking again", tp.topic, tp.partition, delivery.seek_to,
                           SEEK_AGAIN_AFTER_S, offset)
        else:
            logger.warning("The stream of %s:%d missed offsets %d-%d: fetching them again",
                           tp.topic, tp.partition, delivery.seek_to, offset - 1)
        seek_on_thread(self._thread, tp, delivery.seek_to, token=delivery.token)

    def settle_empty(self, tp: TP, start: int, end: int) -> bool:
        """Offsets ``[start, end)`` hold no record (point 10): ack them, so the commit passes
        them, and expect ``end`` next, so a record there is not taken for a miss. False, and
        nothing done, when the stream moved meanwhile (its own bookkeeping then applies)."""
        with ack_lock:  # point 11
            if self.deliveries.refetch.get(tp) is not None or self.deliveries._next.get(tp) != start:
                return False
            self._acked[tp].extend(range(start, end))
            self.deliveries._next[tp] = end
            return True

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's gaps are not recorded: off by one after a seek; point 5 finds real ones."""

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic in self.transactional_topics:
            return None
        return self.take_position(tp)

    def committed_in_transaction(self, offsets: Mapping[TP, int]) -> None:
        """Offsets a transaction committed: what Faust's own commit records (the health
        check's committed offsets, point 5's expectations)."""
        self._committed_offset.update(offsets)

    def take_position(self, tp: TP) -> int | None:
        """The offset ``tp``'s commit may move to now (None: it stays), taken: the next call
        answers from there. Faust's commit asks it; so does a transaction's commit."""
        with ack_lock:  # point 11: sorts and trims the lists an ack appends to
            head, acked = self.deliveries.heads.get(tp), self._acked[tp]
            if head is None or not acked:
                return None
            acked.sort()
            position, used = commit_position(acked, head)  # also drops acks below the head (stale)
            self._acked_index[tp].difference_update(acked[:used])
            del acked[:used]
            if position == head:
                return None
            self.deliveries.heads[tp] = position
            return position


def seek_on_thread(thread: Any, tp: TP, offset: int, *, token: int = 0) -> None:
    """Seek ``tp`` to ``offset`` on the consumer thread's loop, between two of its calls.

    aiokafka is not thread-safe, and Faust's consumer runs on a thread of its own. Sought
    from the worker's thread while the consumer thread was handing out a fetched batch of the
    partition, the batch's end overwrote the new position (``FetchResult.getall`` checks the
    position, iterates, then sets it), so the records missed were never fetched again and the
    partition's stream waited for them for ever (issue 29: after a takeover, 1 run in about 9,
    the windows of the partitions taken over never closed), or the fetcher met a batch the
    seek had just deleted (``KeyError`` in ``fetched_records``). Measured with a real aiokafka
    consumer on a thread, 500 seeks each way: 153 lost from the other thread, none from its
    loop (session 19; tests/integration/test_consumer_seek.py keeps a smaller measure). A
    revoked partition's seek fails there, harmlessly: its next owner reads from the commit.
    Once sought, the thread reports the first offset it fetches from there with ``token``
    (:meth:`ConsumerThread.refetching`).
    """

    def seek() -> None:
        try:
            thread.seek(tp, offset)
            thread.refetching(tp, token)
        except Exception as exc:
            logger.warning("Could not seek %s:%d back to %d: %r", tp.topic, tp.partition, offset, exc)

    try:
        thread.thread_loop.call_soon_threadsafe(seek)
    except RuntimeError as exc:  # the consumer thread's loop is closed: the worker is stopping
        logger.warning("Could not seek %s:%d back to %d: %r", tp.topic, tp.partition, offset, exc)


async def without_superseded(stream: Any, events: list[Any]) -> list[Any]:
    """``events`` less those delivered while their partition is fetched again (point 5),
    which are released here: the fetch delivers them again, in order, after the records the
    stream missed. Handled now, they would move the input watermark past those records."""
    consumer = stream.app.consumer
    superseded = consumer.superseded
    if not superseded:
        return events
    kept = []
    for event in events:
        if event.message in superseded:
            release(consumer, event.message)
        else:
            kept.append(event)
    return kept


def release(consumer: Any, message: Any) -> None:
    """Let a superseded message go without its offset counting as done: Faust stops waiting
    for it (a rebalance waits for every unacked message), but its copy fetched again may be a
    review still owed, and an ack recorded now would let the commit pass that copy (issue 30,
    finding 2: the commit reached 251 while the copy of 249 was in enrichment). Under Faust's
    ``ack_lock``, as its own ``Consumer.ack`` changes the same sets."""
    with ack_lock:
        message.acked = True
        consumer._unacked_messages.discard(message)


async def handled_batches(stream: Any, max_events: int, *, within_s: float) -> AsyncIterator[list[Any]]:
    """``stream.noack_take`` batches without the records that come again (:func:`without_superseded`);
    a batch left empty is not yielded. The loop of every agent that acks its own events."""
    async for taken in stream.noack_take(max_events, within=within_s):
        if events := await without_superseded(stream, taken):
            yield events
