"""Watermark ticks: how windows close by event time, and by wall clock when traffic is quiet.

Each worker's decode stage knows, for every input partition it owns, the largest
``occurred_at`` it has forwarded, and whether the partition is caught up. Its input
watermark is the minimum over those partitions, where a caught-up partition counts as
the wall clock (whatever arrives there next is "now", or late). A partition still being
read holds the watermark back, so a backlog (a restart, a slow partition) never closes
a window before its events are folded in. Using the largest ``occurred_at`` seen on a
by-restaurant partition instead is wrong: input partitions catch up unevenly, and their
skew after a restart exceeded the grace period in the crash test.

A timer sends ``(sender, watermark)`` ticks to every by-restaurant partition. Ticks travel
through the partition like data, so the restaurant stage closes windows inside stream
iteration, in order with the events before them, where table writes are allowed. It
uses the minimum over senders that ticked recently (several workers own input
partitions; a dead worker's ticks stop and it drops out after
``streams.runtime.sender_expiry_ms``). A quiet restaurant's window
still closes on time: its partition keeps receiving ticks.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from faust.types import TP

from streams import metrics
from streams.app import app
from streams.logs import event as log_event
from streams.protocol import Tick, write_tick
from streams.topics import ORDERS_DELIVERED, REVIEWS_CREATED

SENDER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one per worker process
INPUT_TOPICS = (REVIEWS_CREATED, ORDERS_DELIVERED)

progress: dict[TP, int] = {}  # last offset each stage finished, per partition
input_event_ms: dict[TP, int] = {}  # largest occurred_at forwarded, per input partition


def record_progress(events: Any) -> None:
    for ev in events:
        message = ev.message
        progress[message.tp] = message.offset


def record_event_time(tp: TP, occurred_ms: int) -> None:
    if occurred_ms > input_event_ms.get(tp, 0):
        input_event_ms[tp] = occurred_ms


def lag_of(tp: TP) -> int | None:
    try:
        highwater = app.consumer.highwater(tp)
    except Exception:  # not assigned any more, or no fetch yet
        return None
    if highwater is None:
        return None
    return max(0, highwater - progress.get(tp, -1) - 1)


def input_watermark(assigned: set[TP], *, now_ms: int) -> int | None:
    """Min over owned input partitions; None when this worker owns none (it sends no ticks)."""
    marks = []
    for tp in assigned:
        if tp.topic not in INPUT_TOPICS:
            continue
        if lag_of(tp) == 0:
            marks.append(now_ms)
        else:  # behind, or not fetched yet: only as far as what was forwarded
            marks.append(min(input_event_ms.get(tp, 0), now_ms))
    return min(marks) if marks else None


@app.timer(app.settings.window_close_interval_s, name="window-ticks")
async def send_ticks() -> None:
    assigned = app.assignor.assigned_actives()
    for tp in assigned:
        lag = lag_of(tp)
        if lag is not None:
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
    now_ms = int(time.time() * 1000)
    watermark = input_watermark(assigned, now_ms=now_ms)
    if watermark is None:
        return
    by_restaurant = app.topics_.by_restaurant
    value = write_tick(Tick(sender=SENDER, watermark_ms=watermark, sent_at_ms=now_ms))
    for partition in range(app.settings.topic_partitions):
        await by_restaurant.send(key=b"~tick", value=value, partition=partition, force=True)
    log_event("ticks_sent", level=10, watermark=watermark, behind_ms=now_ms - watermark)
