"""The consumer never commits past an unacked offset (streams/faust_internals.py, point 4).

A review's offset stays unacked until its enrichment is durable; a commit past it loses the
review at the next crash or takeover. These drive our Consumer's commit bookkeeping the way
Faust's streams do (the sensor sees each delivered offset, acks fill ``_acked``), without a
broker.
"""

from __future__ import annotations

import pytest
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from streams.faust_internals import ReviewPulseApp, commit_position

TP0 = TP("reviewpulse-by-restaurant", 0)


@pytest.fixture
async def consumer():
    app = ReviewPulseApp("commit-test", broker="kafka://127.0.0.1:1")
    yield app.consumer
    app.consumer._thread.thread_loop.close()  # built with the consumer, never started


def deliver(consumer, *offsets: int) -> None:
    for offset in offsets:
        consumer.app.sensors.on_message_in(TP0, offset, None)


def ack(consumer, *offsets: int) -> None:
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


async def test_a_partition_never_committed_commits_from_its_first_delivered_offset(consumer) -> None:
    deliver(consumer, 0, 1, 2, 3)
    ack(consumer, 1, 2, 3)  # offset 0 owed
    assert consumer._new_offset(TP0) is None
    ack(consumer, 0)
    assert consumer._new_offset(TP0) == 4


async def test_acks_during_a_revocation_commit_nothing_for_the_revoked_partition(consumer) -> None:
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


async def test_a_gap_of_undelivered_offsets_counts_as_done_but_not_the_offset_after_it(consumer) -> None:
    deliver(consumer, 10)
    ack(consumer, 10)
    assert consumer._new_offset(TP0) == 11
    deliver(consumer, 15)  # 11-14 never delivered (compacted, transaction markers)
    await consumer._add_gap(TP0, 11, 15)  # what Faust's fetcher records
    ack(consumer, 9)  # a stale ack below the head is dropped, never a reason to commit
    assert consumer._new_offset(TP0) == 15  # 15 is owed
    ack(consumer, 15)
    assert consumer._new_offset(TP0) == 16


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
