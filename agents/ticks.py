"""Wall-clock progress: ticks that close quiet restaurants' windows, and consumer lag.

A timer sends a tick (the wall clock in ms) to every by-restaurant partition this worker
owns. Ticks travel through the partition like data, so the restaurant stage closes
windows inside stream iteration, in order with the events before them, where table
writes are allowed. Ticks are held back while this worker's decode stage has a backlog:
closing by wall clock then would count the backlog as late.
"""

from __future__ import annotations

import time
from typing import Any

from faust.types import TP

from agents.context import app, settings
from streams import metrics
from streams.logs import event as log_event
from streams.topics import H_KIND, ORDERS_DELIVERED, REVIEWS_CREATED

# Last offset each stage finished, per partition (decode and restaurant stages record it).
progress: dict[TP, int] = {}


def record_progress(events: Any) -> None:
    for ev in events:
        message = ev.message
        progress[message.tp] = message.offset


def lag_of(tp: TP) -> int | None:
    try:
        highwater = app.consumer.highwater(tp)
    except Exception:  # not assigned any more, or no fetch yet
        return None
    if highwater is None:
        return None
    return max(0, highwater - progress.get(tp, -1) - 1)


@app.timer(settings.window_close_interval_s, name="window-ticks")
async def send_ticks() -> None:
    assigned = app.assignor.assigned_actives()
    caught_up = True
    for tp in assigned:
        lag = lag_of(tp)
        if lag is not None:
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        if tp.topic in (REVIEWS_CREATED, ORDERS_DELIVERED) and lag != 0:
            caught_up = False  # a backlog, or not fetched yet: the wall clock would run ahead
    if not caught_up:
        return
    log_event("ticks_sent", level=10, lags={f"{tp.topic}:{tp.partition}": lag_of(tp) for tp in assigned})
    by_restaurant = app.topics_.by_restaurant
    now = str(int(time.time() * 1000)).encode()
    for tp in assigned:
        if tp.topic == by_restaurant.get_topic_name():
            await by_restaurant.send(key=b"~tick", value=now, partition=tp.partition,
                                     headers=[(H_KIND, b"tick")], force=True)
