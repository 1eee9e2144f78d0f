"""Stage 1: decode and validate inputs, dead-letter poison, repartition by restaurant.

Both input topics feed one internal topic keyed by restaurant id, so every piece of a
restaurant's state lives in one partition and one agent writes it (one hop in all).
Each record is Avro-decoded once, here: the by-restaurant record carries the validated
record (:mod:`streams.protocol`) together with the producer's key, value and headers
untouched, so a later stage can still dead-letter exactly what arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from agents.settle import Outputs, settle_behind
from agents.ticks import record_event_time, record_progress
from schema_registry.errors import RegistryHTTPError, SerdeError
from streams import metrics
from streams.app import app, runtime
from streams.codecs import plain_record, to_ms
from streams.delivery import is_too_large, translate
from streams.errors import OutputTooLarge
from streams.faust.commits import handled_batches
from streams.logs import event as log_event
from streams.protocol import H_TRACE, ORDER, REVIEW, Item, Origin, write_item
from streams.validation import Bounds, Invalid, check_record_size, validate_order, validate_review

if TYPE_CHECKING:
    from streams.codecs import AvroCodecs

settings = app.settings
BY_RESTAURANT = app.topics_.by_restaurant.get_topic_name()

# Prometheus ``.labels()`` costs microseconds per call (a lock and a dict lookup of a
# tuple); per event that adds up, so each topic's child counter is looked up once.
_consumed: dict[str, Any] = {}


def count_input_outcome(topic: str, outcome: str) -> None:
    """Where an input record ended (streams.metrics.INPUT_OUTCOMES)."""
    metrics.input_outcome(topic, outcome)


def count_consumed(topic: str) -> None:
    child = _consumed.get(topic)
    if child is None:
        child = _consumed[topic] = metrics.EVENTS_CONSUMED.labels(topic)
    child.inc()


# A registry that did not serve a writer schema is asked again after REGISTRY_RETRY_MIN_S,
# doubling up to REGISTRY_RETRY_MAX_S, for as long as it lasts; or after its Retry-After,
# capped so that a far one (an HTTP date hours away, a skewed clock) still sees the worker
# ask, and log, at least once a minute.
REGISTRY_RETRY_MIN_S = 0.5
REGISTRY_RETRY_MAX_S = 5.0
REGISTRY_RETRY_AFTER_MAX_S = 60.0
DELIVERY_RETRY_S = 1.0  # the producer retried internally already; this spaces out whole batches


async def decode_waiting(codecs: AvroCodecs, record_name: str, value: bytes, *,
                         sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> dict[str, Any]:
    """Decode, waiting while the registry does not serve the writer schema.

    A registry that is down, rate-limits us (429), refuses our credentials (401/403), times
    out or is not where its URL says (a bare 404) says nothing about the record, so the
    record is neither acked nor dead-lettered: each wait is counted
    (``reviewpulse_registry_waits_total{reason}``) and logged, and ``Retry-After`` is
    honoured. Only the registry's "schema not found" is the record's fault: it arrives
    here as UnknownSchemaIdError (a SerdeError, dead-lettered ``unknown_schema_id`` by the
    caller). A registry that understood the request and refused it otherwise (a 400, 406,
    422...: never from a conforming registry for a schema by id) is an answer asking again
    will not change, so it is the record's dead letter ``registry_refused``, never a
    stalled partition (DESIGN §3).
    """
    delay_s = REGISTRY_RETRY_MIN_S
    while True:
        try:
            return plain_record(await codecs.decode(record_name, value))
        except RegistryHTTPError as exc:
            if not exc.retriable:
                raise Invalid("registry_refused", f"the registry refused the writer schema: {exc}") from exc
            if exc.retry_after_s is not None:
                wait_s = min(exc.retry_after_s, REGISTRY_RETRY_AFTER_MAX_S)
            else:
                wait_s, delay_s = delay_s, min(delay_s * 2, REGISTRY_RETRY_MAX_S)
            metrics.REGISTRY_WAITS.labels(exc.reason).inc()
            log_event("registry_unavailable", level=30, reason=exc.reason, status=exc.status,
                      retry_in_s=round(wait_s, 3), error=str(exc))
            await sleep(wait_s)


class Sent(list[Awaitable[Any]]):
    """A batch's delivery futures, and which of them forward which input record: a forward
    the broker refuses for its size becomes that record's dead letter (:func:`_settle`)."""

    def __init__(self) -> None:
        super().__init__()
        self.forwarded: dict[int, tuple[Origin, str | None]] = {}  # index -> (origin, trace id)


async def _dead_letter(message: Any, error: BaseException, *, reason: str,
                       trace_id: str | None) -> Awaitable[Any]:
    count_input_outcome(message.topic, "dead_lettered")
    return await runtime.dead_letters.send(Origin.of(message), stage="decode", reason=reason,
                                           error=error, trace_id=trace_id)


async def send_batch(events: Sequence[Any], *, kind: str) -> Sent:
    """Decode, validate and send one batch; returns the outputs' delivery futures.

    A record's failure is that record's dead letter (with stage, reason and error class);
    the rest of the batch goes on. Nothing here waits for an acknowledgement.
    """
    record_name = "ReviewCreated" if kind == REVIEW else "OrderDelivered"
    outputs = Sent()
    bounds = Bounds.from_settings(settings)
    for ev in events:
        message = ev.message
        count_consumed(message.topic)
        trace_id = None
        try:
            if message.value is None:
                raise Invalid("empty_value", "record has no value (tombstone)")
            origin = Origin.of(message)  # before decoding: the record's size is the first cap
            check_record_size(key=origin.key, value=origin.value, headers=origin.headers,
                              max_bytes=bounds.record_max_bytes)
            record = await decode_waiting(runtime.codecs, record_name, message.value)
            trace_id = record["metadata"]["trace_id"]  # dead letters of invalid values carry it too
            if kind == REVIEW:
                validate_review(record, bounds=bounds)
                restaurant_id = record["entity"]["restaurant_id"]
            else:
                validate_order(record, bounds=bounds)
                restaurant_id = record["restaurant_id"]
            record_event_time(message.tp, to_ms(record["occurred_at"]))
            value = write_item(Item(kind=kind, record=record, origin=origin))
        except (SerdeError, Invalid) as exc:
            outputs.append(await _dead_letter(message, exc, reason=exc.reason, trace_id=trace_id))
            continue
        except Exception as exc:  # a record's failure is that record's dead letter
            log_event("record_failed", level=40, stage="decode", error=repr(exc), trace_id=trace_id)
            outputs.append(await _dead_letter(message, exc, reason="processing_error", trace_id=trace_id))
            continue
        try:  # another error here is broker trouble: the batch is sent again (_settle)
            delivery = await runtime.send(BY_RESTAURANT, key=restaurant_id.encode(), value=value,
                                          headers=[(H_TRACE, trace_id.encode())])
        except OutputTooLarge as exc:
            outputs.append(await _dead_letter(message, exc, reason=exc.reason, trace_id=trace_id))
            continue
        outputs.forwarded[len(outputs)] = (origin, trace_id)
        outputs.append(delivery)
        log_event("decoded", level=10, kind=kind, restaurant=restaurant_id, trace_id=trace_id)
    return outputs


async def _settle(stream: Any, events: list[Any], outputs: Outputs, *, kind: str) -> None:
    """Ack a batch only once its outputs are acknowledged; a failed delivery (broker trouble)
    is retried whole, never acked and never turned into dead letters (decode is idempotent:
    a second copy on the by-restaurant topic is a counted duplicate there). A forward the
    broker refused for its size is the one exception: it is its record's dead letter."""
    while True:
        try:
            if outputs is None:
                outputs = await send_batch(events, kind=kind)
            results = await asyncio.gather(*outputs, return_exceptions=True)
            await _dead_letter_refused(outputs, results)
            break
        except Exception as exc:
            log_event("delivery_failed", level=40, stage="decode", events=len(events), error=repr(exc))
            outputs = None
            await asyncio.sleep(DELIVERY_RETRY_S)
    record_progress(events)
    for event in events:
        await stream.ack(event)
    log_event("decode_batch", level=10, kind=kind, events=len(events))


async def _dead_letter_refused(outputs: Outputs, results: list[Any]) -> None:
    """Dead-letter each forward the broker refused for its size; raise on any other failure.

    A refusal for size does not change on retry (DESIGN §12): sending the batch again would
    stall the partition for good, so the record becomes its dead letter, once, here.
    """
    forwarded = getattr(outputs, "forwarded", {})
    letters = []
    for index, result in enumerate(results):
        if not isinstance(result, BaseException):
            continue
        if not (is_too_large(result) and index in forwarded):
            raise result
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            origin, trace_id = forwarded[index]
            error = translate(result)
            count_input_outcome(origin.topic, "dead_lettered")
            letters.append(await runtime.dead_letters.send(
                origin, stage="decode", reason=OutputTooLarge.reason, error=error, trace_id=trace_id))
    await asyncio.gather(*letters)


async def _decode_stage(stream: Any, *, kind: str) -> None:
    await runtime.ready()
    await settle_behind(
        handled_batches(stream, settings.take_max_events, within_s=settings.take_within_s), stage="decode",
        send=lambda events: send_batch(events, kind=kind),
        settle=lambda events, outputs: _settle(stream, events, outputs, kind=kind))


@app.agent(app.topics_.reviews_created, name="decode-reviews")
async def decode_reviews(stream: Any) -> None:
    await _decode_stage(stream, kind=REVIEW)


@app.agent(app.topics_.orders_delivered, name="decode-orders")
async def decode_orders(stream: Any) -> None:
    await _decode_stage(stream, kind=ORDER)
