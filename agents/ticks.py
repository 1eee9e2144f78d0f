"""Watermark ticks: how windows close by event time, and by wall clock when traffic is quiet.

Each worker's decode stage knows, for every input partition it owns, the largest
``occurred_at`` it has forwarded, and whether the partition is caught up. Its input
watermark is the minimum over those partitions, where a caught-up partition counts as
the wall clock (whatever arrives there next is "now", or late). A partition still being
read holds the watermark back, so a backlog (a restart, a slow partition) never closes
a window before its events are folded in. Using the largest ``occurred_at`` seen on a
by-restaurant partition instead is wrong: input partitions catch up unevenly, and their
skew after a restart exceeded the grace period in the crash test.

A timer sends ticks carrying one mark per owned input partition to every by-restaurant
partition. Ticks travel through the partition like data, so the restaurant stage closes
windows inside stream iteration, in order with the events before them, where table
writes are allowed. The stage keeps the newest mark of *every* input partition, whoever
sent it, and uses their minimum: when a worker dies, its input partitions keep their last
mark until the worker that takes them over has read them and ticks them forward, so no
window closes over events nobody has read yet (Kafka Streams' stream time is per
partition in the same way). A quiet restaurant's window still closes on time: its
partition keeps receiving ticks.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from faust.types import TP

from streams import metrics
from streams.app import app
from streams.faust.transport import committed_offset, holds_no_record, last_fetched_ms
from streams.logs import event as log_event
from streams.protocol import Tick, write_tick
from streams.topics import ORDERS_DELIVERED, REVIEWS_CREATED

SENDER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one per worker process
INPUT_TOPICS = (REVIEWS_CREATED, ORDERS_DELIVERED)

# A caught-up partition is fetched once per fetch wait (100 ms by default): no answer for ten
# of them, and at least a second, means the broker is not answering. Below the window grace
# (seconds), so what waits upstream during a broker restart is not closed out.
STALE_AFTER_FETCH_WAITS = 10
STALE_AFTER_MIN_MS = 1_000

progress: dict[TP, int] = {}  # last offset each stage finished, per partition
input_event_ms: dict[TP, int] = {}  # largest occurred_at forwarded, per input partition
# Input partitions whose offsets after the stage's last one, up to the high watermark, hold
# no record (transaction markers, aborted records): (last offset done, high watermark).
markers_only: dict[TP, tuple[int, int]] = {}
_done_at_last_tick: dict[TP, int | None] = {}
_record_after: dict[TP, int] = {}  # last offset done when a probe found a record after it


def record_progress(events: Any) -> None:
    for ev in events:
        message = ev.message
        progress[message.tp] = message.offset


def record_event_time(tp: TP, occurred_ms: int) -> None:
    if occurred_ms > input_event_ms.get(tp, 0):
        input_event_ms[tp] = occurred_ms


def fresh(tp: TP) -> bool:
    """Whether a fetch answered for ``tp`` lately. While the broker does not answer (a restart,
    a network cut) the last high watermark known is stale: records other services produce
    meanwhile wait in their producers, so the partition is not caught up, whatever its lag
    read last. Without this a broker restart closed every window on the wall clock over the
    reviews still buffered upstream (tests/integration/test_kafka_durability.py)."""
    fetched = last_fetched_ms(app, tp)
    stale_after_ms = max(STALE_AFTER_MIN_MS, STALE_AFTER_FETCH_WAITS * app.fetch_max_wait_ms)
    return fetched is not None and time.time() * 1000 - fetched <= stale_after_ms


def lag_of(tp: TP) -> int | None:
    """Records of ``tp`` not yet handled by its stage; None while unknown.

    Before the stage handled a record of a partition since its assignment, the committed
    offset says where it stands: a restarted worker whose inputs are quiet (everything
    committed) is caught up, so its windows close on the wall clock instead of waiting
    for the next input record.
    """
    try:
        highwater = app.consumer.highwater(tp)
    except Exception:  # not assigned any more, or no fetch yet
        return None
    if highwater is None or not fresh(tp):
        return None
    done = progress.get(tp)
    if done is not None:
        if markers_only.get(tp) == (done, highwater):
            return 0
        return max(0, highwater - done - 1)
    if not highwater:
        return 0  # an empty partition
    committed = committed_offset(app, tp)
    return None if committed is None else max(0, highwater - committed)


@app.on_partitions_revoked.connect
async def _forget_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
    """What this worker knew of a partition it loses is stale if it ever gets it back."""
    for tp in revoked:
        for known in (progress, input_event_ms, markers_only, _done_at_last_tick, _record_after):
            known.pop(tp, None)


async def settle_markers(assigned: set[TP]) -> None:
    """An input partition whose stage stopped short of the high watermark over a whole tick
    interval is checked once per (last offset done, high watermark): when the offsets between
    hold only transaction markers or aborted records, it is caught up, and those offsets are
    acked so its commit reaches the end (streams/faust/, point 10). Without
    this, a quiet partition of a transactional producer held every window open. A stage
    stalled on a record (a registry outage) is probed once, not at every tick."""
    for tp in assigned:
        if tp.topic not in INPUT_TOPICS:
            continue
        done = progress.get(tp)
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:  # not assigned any more, or no fetch yet
            continue
        stalled = _done_at_last_tick.get(tp, -1) == done
        _done_at_last_tick[tp] = done
        if (done is None or highwater is None or highwater <= done + 1 or not stalled or not fresh(tp)
                or markers_only.get(tp) == (done, highwater) or _record_after.get(tp) == done):
            continue
        empty = await holds_no_record(app, tp, start=done + 1, end=highwater)
        if empty is False:
            _record_after[tp] = done
        elif empty and progress.get(tp) == done:
            markers_only[tp] = (done, highwater)
            app.consumer.settle_empty(tp, done + 1, highwater)
            log_event("markers_skipped", level=10, topic=tp.topic, partition=tp.partition,
                      offsets=highwater - done - 1)


def input_marks(assigned: set[TP], *, now_ms: int) -> dict[str, int]:
    """Per owned input partition: the wall clock when caught up, else what was forwarded."""
    marks = {}
    for tp in assigned:
        if tp.topic not in INPUT_TOPICS:
            continue
        caught_up = lag_of(tp) == 0
        marks[f"{tp.topic}:{tp.partition}"] = now_ms if caught_up else min(input_event_ms.get(tp, 0), now_ms)
    return marks


@app.timer(app.settings.window_close_interval_s, name="window-ticks")
async def send_ticks() -> None:
    assigned = app.assignor.assigned_actives()
    await settle_markers(assigned)
    app.health.observe_commits()
    for tp in assigned:
        lag = lag_of(tp)
        if lag is not None:
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
    now_ms = int(time.time() * 1000)
    marks = input_marks(assigned, now_ms=now_ms)
    if not marks:  # this worker owns no input partition: others tick
        return
    watermark = min(marks.values())
    by_restaurant = app.topics_.by_restaurant
    counts = {topic: n for topic in INPUT_TOPICS if (n := app.consumer.topic_partitions(topic))}
    value = write_tick(Tick(sender=SENDER, sent_at_ms=now_ms, marks=marks, partitions=counts))
    for partition in range(app.settings.topic_partitions):
        await by_restaurant.send(key=b"~tick", value=value, partition=partition, force=True)
    log_event("ticks_sent", level=10, watermark=watermark, behind_ms=now_ms - watermark)
