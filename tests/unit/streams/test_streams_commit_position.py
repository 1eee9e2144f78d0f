"""The consumer never commits past an unacked offset, and fetches again what a stream missed
(streams/faust/, points 4 and 5).

A review's offset stays unacked until its enrichment is durable; a commit past it loses the
review at the next crash or takeover. These drive our Consumer's commit bookkeeping the way
Faust's streams do (the sensor sees each delivered offset, acks fill ``_acked``), without a
broker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref

import pytest
from faust.types import TP
from faust.types.tuples import ack_lock
from hypothesis import given
from hypothesis import strategies as st

from streams.faust import commits
from streams.faust.app import ReviewPulseApp
from streams.faust.commits import Deliveries, commit_position, without_superseded

TP0 = TP("reviewpulse-by-restaurant", 0)


@pytest.fixture
async def consumer():
    app = ReviewPulseApp("commit-test", broker="kafka://127.0.0.1:1")
    yield app.consumer
    app.consumer._thread.thread_loop.close()  # built with the consumer, never started


class Message:
    """Stands for a Faust message: the consumer keeps superseded ones in a WeakSet."""


def deliver(consumer, *offsets: int) -> list[Message]:
    messages = [Message() for _ in offsets]
    for offset, message in zip(offsets, messages, strict=True):
        consumer.app.sensors.on_message_in(TP0, offset, message)
    return messages


def ack(consumer, *offsets: int) -> None:
    """What Faust's ``Consumer.ack`` does with each offset, under its ``ack_lock``."""
    with ack_lock:
        consumer._acked[TP0].extend(offsets)
        consumer._acked_index[TP0].update(offsets)


async def test_an_owed_offset_at_the_committed_position_holds_the_commit(consumer) -> None:
    # Committed 250 (the next to read): 250 is a review still being enriched, 251-252 done.
    consumer._committed_offset[TP0] = 250
    deliver(consumer, 250, 251, 252)
    ack(consumer, 251, 252)
    assert consumer._new_offset(TP0) is None  # Faust's own check commits 253 here
    ack(consumer, 250)
    assert consumer._new_offset(TP0) == 253
    assert consumer._acked[TP0] == []


async def test_a_partition_never_committed_commits_from_its_beginning(consumer) -> None:
    deliver(consumer, 0, 1, 2, 3)
    ack(consumer, 1, 2, 3)  # offset 0 owed
    assert consumer._new_offset(TP0) is None
    ack(consumer, 0)
    assert consumer._new_offset(TP0) == 4


async def test_a_partition_never_committed_whose_first_record_is_not_its_first_reads_it_all(
        consumer, seeks) -> None:
    # A worker killed before its first commit, restarted: a record fetched before the seek to
    # the beginning reached the stream first (offset 252). Taken as the start, the commit
    # passed 0-251 unread (test_crash_enrichment, under load: 146 reviews never enriched).
    early = deliver(consumer, 252, 253)
    assert seeks == [(TP0, 0)]
    assert all(m in consumer.superseded for m in early)
    ack(consumer, 252, 253)  # whatever acks them meanwhile
    assert consumer._new_offset(TP0) is None
    fetched_from(consumer, 0)
    again = deliver(consumer, *range(0, 254))  # fetched from the beginning
    assert not any(m in consumer.superseded for m in again)
    ack(consumer, *range(0, 251))
    assert consumer._new_offset(TP0) == 251  # 251 still owed
    ack(consumer, 251, 252, 253)
    assert consumer._new_offset(TP0) == 254


async def test_a_partition_never_committed_whose_log_starts_later_commits_from_there(
        consumer, seeks) -> None:
    # Retention removed 0-99: the fetch from 0 starts at 100, and 0-99 hold no record.
    deliver(consumer, 100)
    assert seeks == [(TP0, 0)]
    fetched_from(consumer, 100)  # the fetch from the beginning: the log starts at 100
    deliver(consumer, 100, 101)
    assert seeks == [(TP0, 0)]
    assert consumer._new_offset(TP0) == 100
    ack(consumer, 100, 101)
    assert consumer._new_offset(TP0) == 102


async def test_acks_during_a_revocation_commit_nothing_for_the_revoked_partition(consumer) -> None:
    consumer._committed_offset[TP0] = 100
    deliver(consumer, 100, 101, 102)
    ack(consumer, 100)
    assert consumer._new_offset(TP0) == 101
    await consumer.on_partitions_revoked({TP0})
    # Faust forgot the partition's offsets; the batch in flight acks 102 (101 was abandoned).
    ack(consumer, 102)
    assert consumer._new_offset(TP0) is None
    # Reassigned: the head is the first offset delivered again (the committed 101).
    consumer._committed_offset[TP0] = 101
    deliver(consumer, 101, 102)
    assert consumer._new_offset(TP0) is None
    ack(consumer, 101)
    assert consumer._new_offset(TP0) == 103


@pytest.fixture
def seeks(consumer, monkeypatch) -> list[tuple[TP, int]]:
    """The seeks the consumer asks of its (never started) consumer thread."""
    asked: list[tuple[TP, int]] = []
    tokens: list[int] = []

    def seek(thread, tp: TP, offset: int, *, token: int) -> None:
        asked.append((tp, offset))
        tokens.append(token)

    monkeypatch.setattr(commits, "seek_on_thread", seek)
    consumer.seek_tokens = tokens
    return asked


def fetched_from(consumer, offset: int) -> None:
    """What the consumer thread reports: its first records after the last seek start at ``offset``."""
    consumer.deliveries.fetched_from(TP0, consumer.seek_tokens[-1], offset)


async def test_offsets_a_stream_missed_are_fetched_again_and_hold_the_commit(consumer, seeks) -> None:
    consumer._committed_offset[TP0] = 240
    deliver(consumer, 240)
    ack(consumer, 240)
    early = deliver(consumer, 249, 250)  # 241-248 reached the fetch loop, never the stream
    assert seeks == [(TP0, 241)]
    assert consumer._read_offset[TP0] == 241  # the fetch loop will not drop them as read
    assert all(m in consumer.superseded for m in early)  # handled when they come again
    ack(consumer, 249, 250)
    assert consumer._new_offset(TP0) == 241  # never past 241
    fetched_from(consumer, 241)
    again = deliver(consumer, *range(241, 252))  # fetched again from 241: 249-250 a second time
    assert seeks == [(TP0, 241)]
    assert not any(m in consumer.superseded for m in again)
    ack(consumer, *range(241, 252))
    assert consumer._new_offset(TP0) == 252


async def test_a_first_delivery_past_the_committed_offset_seeks_back_to_it(consumer, seeks) -> None:
    consumer._committed_offset[TP0] = 157
    deliver(consumer, 158, 159)
    ack(consumer, 158, 159)
    assert seeks == [(TP0, 157)]
    assert consumer._new_offset(TP0) is None  # 157 was never handled
    fetched_from(consumer, 157)
    deliver(consumer, 157, 158)
    ack(consumer, 157, 158)
    assert consumer._new_offset(TP0) == 160


async def test_offsets_without_records_are_done_once_the_fetch_again_starts_past_them(
        consumer, seeks) -> None:
    consumer._committed_offset[TP0] = 10
    deliver(consumer, 10)
    ack(consumer, 10)
    assert consumer._new_offset(TP0) == 11
    deliver(consumer, 15)  # 11-14: compacted away, or transaction markers
    await consumer._add_gap(TP0, 11, 15)  # what Faust's fetch loop records, not trusted
    assert seeks == [(TP0, 11)]
    assert consumer._new_offset(TP0) is None
    fetched_from(consumer, 15)  # the fetch from 11 starts at 15: nothing below it exists
    deliver(consumer, 15)
    ack(consumer, 9)  # a stale ack below the head is dropped, never a reason to commit
    assert consumer._new_offset(TP0) == 15  # 15 is owed
    ack(consumer, 15)
    assert consumer._new_offset(TP0) == 16


@given(records=st.lists(st.booleans(), min_size=1, max_size=80),
       drops=st.lists(st.booleans(), max_size=120), lost=st.lists(st.booleans(), max_size=6),
       repeats=st.lists(st.integers(0, 8), max_size=12), batch=st.integers(1, 8))
def test_every_record_reaches_the_stream_whatever_it_misses(
        records: list[bool], drops: list[bool], lost: list[bool], repeats: list[int], batch: int) -> None:
    """A log (False: an offset without a record), a stream that misses a record the first time
    it is fetched where ``drops`` says (the misses we know of happen around a rebalance),
    seeks that do not take where ``lost`` says, batches fetched before a seek that repeat the
    last few offsets delivered where ``repeats`` says (Faust's second seek to the commit after a
    rebalance), and a fetch loop that hands over a batch a second: with what the bookkeeping
    asks for and the first offset fetched after each seek, every record is delivered, the
    stage handles each in order (a repeated copy again: deduplicated downstream), and only
    offsets without a record are ever reported done. Ticks keep coming on by-restaurant, as
    they do, while the partition waits for a seek."""
    deliveries, tp = Deliveries(), TP0
    delivered: set[int] = set()
    handled: list[int] = []  # delivered and not to come again: what the stage works on
    done: set[int] = set()
    records.append(True)  # a later record (on by-restaurant, a tick) shows any miss before it
    position, misses, seeks_lost, repeated, fetched_before = 0, iter(drops), iter(lost), iter(repeats), set()
    never_missed = len(records) - 1  # the last record and the ticks after it
    token = None  # the seek whose first fetch the consumer thread reports next
    for second in range(10_000):
        fetched = [o for o in range(position, len(records)) if records[o]][:batch]
        if not fetched:
            if not deliveries.refetch:
                break
            records.append(True)  # the next tick
            continue
        if token is not None:
            deliveries.fetched_from(tp, token, fetched[0])
            token = None
        back = next(repeated, 0)  # a batch fetched before the seek, starting below the last one
        if back and handled and deliveries.refetch:
            fetched = [o for o in range(max(0, fetched[0] - back), fetched[0]) if records[o]] + fetched
        position, seek = fetched[-1] + 1, None
        for offset in fetched:  # the whole batch goes by, even after a seek is asked for
            first_time = offset not in fetched_before
            fetched_before.add(offset)
            if next(misses, False) and first_time and offset < never_missed:
                continue
            delivered.add(offset)
            delivery = deliveries.delivered(tp, offset, committed=0, now=float(second))
            done.update(delivery.done)
            if not delivery.again and offset not in handled:
                handled.append(offset)
            if delivery.seek_to is not None:
                seek = delivery
        if seek is not None and not next(seeks_lost, False):
            position, token = seek.seek_to, seek.token
    assert delivered == {o for o, present in enumerate(records) if present}
    assert handled == [o for o, present in enumerate(records) if present]  # each once, in order
    assert all(not records[o] for o in done)


async def test_a_repeated_offset_before_the_fetch_again_is_not_its_start(consumer, seeks) -> None:
    """Issue 29: after a takeover, Faust's two seeks to the commit left two copies of a run of
    offsets in the stream's way; the repeated 396 was taken for the start of the fetch from
    225, and 225-395 (45 reviews) were committed as offsets without records."""
    consumer._committed_offset[TP0] = 188
    deliver(consumer, *range(188, 225))
    ack(consumer, *range(188, 225))
    early = deliver(consumer, 228, *range(229, 400))  # 225-227 missed
    assert seeks == [(TP0, 225)]
    repeated = deliver(consumer, 396, 397)  # the second copy, fetched before the seek
    assert all(m in consumer.superseded for m in early + repeated)
    assert consumer._new_offset(TP0) == 225
    fetched_from(consumer, 225)
    again = deliver(consumer, *range(225, 400))
    assert not any(m in consumer.superseded for m in again)
    assert consumer._new_offset(TP0) is None  # 225 onwards are owed until acked: none is done
    ack(consumer, *range(225, 400))
    assert consumer._new_offset(TP0) == 400


async def test_a_fetch_again_not_begun_is_asked_for_again(consumer, seeks, caplog) -> None:
    consumer._committed_offset[TP0] = 10
    deliver(consumer, 10)
    deliver(consumer, 15)  # 11-14 missed: seek back to 11
    assert seeks == [(TP0, 11)]
    first = consumer.seek_tokens[-1]
    later = commits.SEEK_AGAIN_AFTER_S + 0.1
    now = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="streams.faust.commits"):
        consumer.deliveries._sought_at[TP0] = now - 1.0  # the fetch before the seek, going by
        deliver(consumer, 16)
        assert seeks == [(TP0, 11)]
        consumer.deliveries._sought_at[TP0] = now - later  # its first records never came
        early = deliver(consumer, 17)
        assert seeks == [(TP0, 11), (TP0, 11)]
        assert "has not begun" in caplog.text
    assert all(m in consumer.superseded for m in early)
    consumer.deliveries.fetched_from(TP0, first, 11)  # the first seek's fetch, reported late
    assert all(m in consumer.superseded for m in deliver(consumer, 11))  # not the one waited for
    fetched_from(consumer, 11)
    again = deliver(consumer, *range(11, 18))
    assert not any(m in consumer.superseded for m in again)
    assert seeks == [(TP0, 11), (TP0, 11)]


def test_a_seek_runs_on_the_consumer_thread_s_loop(caplog) -> None:
    """aiokafka is not thread-safe: a seek asked from the worker's thread is handed to the
    consumer thread's loop (a seek done in place was overwritten by a batch being handed out:
    tests/integration/test_consumer_seek.py measures it on a real consumer), which then
    expects the seek's first records."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="consumer-thread")
    runner.start()
    ran_on: list[tuple[str, str]] = []
    ran = threading.Event()

    class Thread:
        thread_loop = loop

        def seek(self, tp: TP, offset: int) -> None:
            ran_on.append(("seek", threading.current_thread().name))

        def refetching(self, tp: TP, token: int) -> None:
            ran_on.append((f"refetching {token}", threading.current_thread().name))
            ran.set()

    try:
        commits.seek_on_thread(Thread(), TP0, 11, token=7)
        assert ran.wait(5)
        assert ran_on == [("seek", "consumer-thread"), ("refetching 7", "consumer-thread")]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
    with caplog.at_level(logging.WARNING, logger="streams.faust.commits"):
        commits.seek_on_thread(Thread(), TP0, 11, token=8)  # the loop closed: the worker is stopping
    assert "Could not seek" in caplog.text


@given(head=st.integers(0, 50), acked=st.lists(st.integers(0, 120), max_size=60))
def test_commit_position_is_the_first_unacked_offset_from_the_head(head: int, acked: list[int]) -> None:
    acked = sorted(acked)
    position, used = commit_position(acked, head)
    done = set(acked)
    assert position >= head
    assert all(offset in done for offset in range(head, position))
    assert position not in done
    assert all(offset < position for offset in acked[:used])
    assert all(offset > position for offset in acked[used:])


class Event:
    def __init__(self, message: Message) -> None:
        self.message = message


class Stream:
    def __init__(self, consumer) -> None:
        self.app = consumer.app


async def test_records_that_come_again_are_released_and_left_out_of_the_batch(consumer, seeks) -> None:
    consumer._committed_offset[TP0] = 10
    handled = deliver(consumer, 10)
    early = deliver(consumer, 12, 13)  # 11 missed: 12-13 come again after it
    consumer._unacked_messages.update(early)

    kept = await without_superseded(Stream(consumer), [Event(m) for m in handled + early])
    assert [e.message for e in kept] == handled
    assert all(m.acked for m in early)  # Faust no longer waits for them
    assert not consumer._unacked_messages & set(early)
    assert consumer._acked[TP0] == []  # and nothing counts as done for them


async def test_a_copy_fetched_again_and_still_owed_holds_the_commit(consumer, seeks) -> None:
    # Issue 30, finding 2: the early copy of 12 was acked, so the commit passed the copy
    # fetched again while that review was still in enrichment.
    consumer._committed_offset[TP0] = 10
    handled = deliver(consumer, 10)
    early = deliver(consumer, 12, 13)
    await without_superseded(Stream(consumer), [Event(m) for m in handled + early])
    ack(consumer, 10)
    fetched_from(consumer, 11)
    deliver(consumer, 11, 12, 13)  # the fetch from 11
    ack(consumer, 11, 13)  # 12 is a review whose enrichment is in flight
    assert consumer._new_offset(TP0) == 12
    ack(consumer, 12)
    assert consumer._new_offset(TP0) == 14


async def test_offsets_found_to_hold_only_markers_are_committed_and_the_next_record_is_no_miss(
        consumer, seeks) -> None:
    # A transactional producer's last commit marker at 11 (point 10): nothing comes after it.
    consumer._committed_offset[TP0] = 10
    deliver(consumer, 10)
    ack(consumer, 10)
    assert consumer._new_offset(TP0) == 11
    assert consumer.settle_empty(TP0, 11, 12)  # the probe found no record in [11, 12)
    assert consumer._new_offset(TP0) == 12  # the commit reaches the partition's end
    deliver(consumer, 12)  # the next transaction's first record
    assert seeks == []  # expected: no seek back to the marker
    ack(consumer, 12)
    assert consumer._new_offset(TP0) == 13


async def test_markers_are_not_settled_once_the_stream_moved_past_them(consumer, seeks) -> None:
    consumer._committed_offset[TP0] = 10
    deliver(consumer, 10)
    deliver(consumer, 13)  # arrived while the probe ran: the stream's own bookkeeping applies
    assert seeks == [(TP0, 11)]
    assert not consumer.settle_empty(TP0, 11, 13)
    ack(consumer, 10, 13)
    assert consumer._new_offset(TP0) == 11  # 11-12 are not taken for empty on the probe's word


class _UnderAckLock:
    """Mixin: every change must be made holding Faust's ``ack_lock`` (point 11), as
    ``Consumer.ack``, which may run on another thread, changes the same structures under it."""

    def _check(self) -> None:
        assert ack_lock._is_owned(), "changed without Faust's ack_lock"


class _LockedList(_UnderAckLock, list):  # type: ignore[type-arg]
    def extend(self, items) -> None:
        self._check()
        super().extend(items)

    def sort(self, *args, **kwargs) -> None:
        self._check()
        super().sort(*args, **kwargs)

    def __delitem__(self, index) -> None:
        self._check()
        super().__delitem__(index)


class _LockedSet(_UnderAckLock, set):  # type: ignore[type-arg]
    def difference_update(self, *others) -> None:
        self._check()
        super().difference_update(*others)


class _LockedWeakSet(_UnderAckLock, weakref.WeakSet):  # type: ignore[type-arg]
    def discard(self, item) -> None:
        self._check()
        super().discard(item)


async def test_the_commit_bookkeeping_changes_faust_s_ack_structures_only_under_its_ack_lock(
        consumer, seeks) -> None:
    consumer._acked[TP0] = acked = _LockedList()
    consumer._acked_index[TP0] = _LockedSet()
    consumer._unacked_messages = _LockedWeakSet()
    consumer._committed_offset[TP0] = 10
    deliver(consumer, 10)
    early = deliver(consumer, 12)  # 11 missed: sought back to it
    consumer._unacked_messages.update(early)
    await without_superseded(Stream(consumer), [Event(m) for m in early])  # release()
    fetched_from(consumer, 12)  # the fetch from 11 starts at 12: 11 holds no record (done)
    deliver(consumer, 12)
    ack(consumer, 10, 12)
    assert consumer._new_offset(TP0) == 13  # sorted and trimmed under the lock
    assert consumer.settle_empty(TP0, 13, 16)  # markers
    assert consumer._new_offset(TP0) == 16
    assert acked == []

    abandoned = Message()
    consumer._unacked_messages.add(abandoned)
    consumer.app.before_wait_empty = lambda: [abandoned]
    await consumer.app._consumer_wait_empty(consumer, logging.getLogger(__name__))
    assert abandoned not in consumer._unacked_messages
