"""Stage 1: decode and validate inputs, dead-letter poison, repartition by restaurant.

Both input topics feed one internal topic keyed by restaurant id, so every piece of a
restaurant's state lives in one partition and one agent writes it (one hop in all).
Each record is Avro-decoded once, here: the by-restaurant record carries the validated
record (:mod:`streams.protocol`) together with the producer's key, value and headers
untouched, so a later stage can still dead-letter exactly what arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from agents.ticks import record_event_time, record_progress
from schema_registry.errors import RegistryHTTPError, SerdeError
from streams import metrics
from streams.app import app, runtime
from streams.codecs import plain_record, to_ms
from streams.logs import event as log_event
from streams.protocol import H_TRACE, ORDER, REVIEW, Item, Origin, write_item
from streams.validation import Bounds, Invalid, validate_order, validate_review

settings = app.settings

# Prometheus ``.labels()`` costs microseconds per call (a lock and a dict lookup of a
# tuple); per event that adds up, so each topic's child counter is looked up once.
_consumed: dict[str, Any] = {}


def count_consumed(topic: str) -> None:
    child = _consumed.get(topic)
    if child is None:
        child = _consumed[topic] = metrics.EVENTS_CONSUMED.labels(topic)
    child.inc()


async def forward(events: Sequence[Any], *, kind: str) -> int:
    """Decode, validate and forward one batch; returns how many were dead-lettered."""
    record_name = "ReviewCreated" if kind == REVIEW else "OrderDelivered"
    pending: list[Awaitable[Any]] = []
    bounds = Bounds.from_settings(settings)
    dead = 0
    for ev in events:
        message = ev.message
        count_consumed(message.topic)
        trace_id = None
        try:
            if message.value is None:
                raise Invalid("empty_value", "record has no value (tombstone)")
            record = plain_record(await runtime.codecs.decode(record_name, message.value))
            trace_id = record["metadata"]["trace_id"]  # dead letters of invalid values carry it too
            record_event_time(message.tp, to_ms(record["occurred_at"]))
            if kind == REVIEW:
                validate_review(record, bounds=bounds)
                restaurant_id = record["entity"]["restaurant_id"]
            else:
                validate_order(record, bounds=bounds)
                restaurant_id = record["restaurant_id"]
        except (SerdeError, Invalid, RegistryHTTPError) as exc:
            reason = exc.reason if isinstance(exc, SerdeError | Invalid) else "registry_unavailable"
            pending.append(await runtime.dead_letters.send(
                Origin.of(message), stage="decode", reason=reason, error=exc, trace_id=trace_id))
            dead += 1
            continue
        value = write_item(Item(kind=kind, record=record, origin=Origin.of(message)))
        pending.append(await app.topics_.by_restaurant.send(
            key=restaurant_id.encode(), value=value, headers=[(H_TRACE, trace_id.encode())], force=True))
        log_event("decoded", level=10, kind=kind, restaurant=restaurant_id, trace_id=trace_id)
    # Every output is acknowledged before take_events acks (and so commits) the inputs.
    await asyncio.gather(*pending)
    record_progress(events)
    return dead


@app.agent(app.topics_.reviews_created, name="decode-reviews")
async def decode_reviews(stream: Any) -> None:
    await runtime.ready()
    async for events in stream.take_events(settings.take_max_events, within=settings.take_within_s):
        dead = await forward(events, kind=REVIEW)
        log_event("decode_batch", kind="review", events=len(events), dead_lettered=dead)


@app.agent(app.topics_.orders_delivered, name="decode-orders")
async def decode_orders(stream: Any) -> None:
    await runtime.ready()
    async for events in stream.take_events(settings.take_max_events, within=settings.take_within_s):
        await forward(events, kind=ORDER)
