"""Delayed redelivery: reviews whose LLM call failed transiently wait here, then go back.

A record waits until its not-before time, then returns to the by-restaurant topic, where
the restaurant stage enriches it again and joins the answer into the pane the review was
folded into at first sight (it is never folded twice). Delays grow per attempt, so the
head of a partition is (nearly) always the first due: waiting on it in order costs little.
A not-before time further ahead than the longest delay the settings allow (a forged or
clock-skewed record) is capped at that delay, so no record stalls its partition.

The stage acks its own events (``noack_take``), and a record only once its copy on the
by-restaurant topic (or its dead letter) is acknowledged: an auto-acked record lost the
review when the worker stopped inside the wait, or when the send failed (DESIGN §12, issue
30 finding 6). A failed delivery is sent again after a pause, for as long as it fails
(broker trouble: waited out, logged); a record that was sent twice is a counted duplicate
at the restaurant stage. What was not acked when the worker stops stays uncommitted, and
whoever owns the partition next sends it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents.ticks import record_progress
from streams.app import app, runtime
from streams.faust.commits import handled_batches
from streams.logs import event as log_event
from streams.protocol import Item, Origin, ProtocolError, read_item

BY_RESTAURANT = app.topics_.by_restaurant.get_topic_name()
DELIVERY_RETRY_S = 1.0  # the producer retried internally already; this spaces out whole attempts

Forward = Callable[[Any, "Item | ProtocolError"], Awaitable[Awaitable[Any]]]
Ack = Callable[[Any], Awaitable[Any]]


def longest_delay_s() -> float:
    settings = app.settings
    return settings.llm_retry_delay_s * 2 ** max(0, settings.llm_max_attempts - 1)


def wait_s(read: Item | ProtocolError, *, now_s: float, longest_s: float) -> float:
    """How long the record waits before it goes back: none for one that is no retry item."""
    if isinstance(read, ProtocolError):
        return 0.0
    return min(read.not_before_ms / 1000 - now_s, longest_s)


async def redeliver(events: Sequence[Any], *, forward: Forward, ack: Ack) -> None:
    """Send each event on when it is due, in order, and ack it once its output is acknowledged.

    Records that are due go out back to back; before a wait, the ones already sent are
    settled (acknowledged, then acked), so a long wait never holds back the commit of records
    that are done. A cancel (the worker stops, its partition is revoked) leaves every event
    not yet settled unacked: the commit never passes it.
    """
    reads: list[tuple[Any, Item | ProtocolError]] = []
    for event in events:
        try:
            reads.append((event, read_item(event.message.value)))
        except ProtocolError as exc:
            reads.append((event, exc))
    sending: list[tuple[Any, Item | ProtocolError]] = []
    outputs: list[Awaitable[Any]] | None = []
    for event, read in reads:
        delay_s = wait_s(read, now_s=time.time(), longest_s=longest_delay_s())
        if delay_s > 0:
            await _settle(sending, outputs, forward=forward, ack=ack)
            sending, outputs = [], []
            await asyncio.sleep(delay_s)
        sending.append((event, read))
        if outputs is not None:
            try:
                outputs.append(await forward(event, read))
            except Exception as exc:  # e.g. the producer refused the record: _settle sends again
                log_event("delivery_failed", level=40, stage="retry", events=len(sending), error=repr(exc))
                outputs = None
    await _settle(sending, outputs, forward=forward, ack=ack)


async def _settle(sending: list[tuple[Any, Item | ProtocolError]], outputs: list[Awaitable[Any]] | None, *,
                  forward: Forward, ack: Ack) -> None:
    """Wait for the outputs of ``sending``; when one failed, send them all again (whole unit)."""
    if not sending:
        return
    while True:
        try:
            if outputs is None:
                outputs = [await forward(event, read) for event, read in sending]
            await asyncio.gather(*outputs)
            break
        except Exception as exc:
            log_event("delivery_failed", level=40, stage="retry", events=len(sending), error=repr(exc))
            outputs = None
            await asyncio.sleep(DELIVERY_RETRY_S)
    events = [event for event, _ in sending]
    for event in events:
        await ack(event)
    record_progress(events)


async def forward(event: Any, read: Item | ProtocolError) -> Awaitable[Any]:
    """The record back on the by-restaurant topic, untouched, or its dead letter; returns the
    delivery to await."""
    message = event.message
    if isinstance(read, ProtocolError):
        return await runtime.dead_letters.send(Origin.of(message), stage="retry", reason=read.reason,
                                               error=read)
    return await runtime.send(BY_RESTAURANT, key=message.key, value=message.value,
                              headers=list(message.headers or ()))


@app.agent(app.topics_.retry, name="retry")
async def retry_stage(stream: Any) -> None:
    await runtime.ready()
    settings = app.settings
    async for events in handled_batches(stream, settings.take_max_events, within_s=settings.take_within_s):
        await redeliver(events, forward=forward, ack=stream.ack)
