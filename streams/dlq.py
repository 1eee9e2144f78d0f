"""The one way to dead-letter a record: keep its bytes, say where it came from and why.

A DeadLetter keeps the original key, value and headers untouched, so
``reviewpulse dlq replay`` can re-publish exactly what the producer wrote.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import faust

from streams import metrics
from streams.codecs import AvroCodecs
from streams.logs import event as log_event
from streams.protocol import Origin

# Error messages are clipped: a dead letter is for triage, not for carrying payloads twice.
MAX_ERROR_MESSAGE_CHARS = 2_000
# Largest dead letter (key and encoded value) sent whole: Faust's producer refuses a request
# over 1,000,000 bytes (producer_max_request_size, which the app leaves at its default), less
# 16 KiB for the batch and record framing. A larger one keeps its coordinates and reason but
# not the original key, value and headers, so a dead letter never fails for its own size.
DEAD_LETTER_MAX_BYTES = 1_000_000 - 16 * 1024


def dead_letter_record(
    origin: Origin,
    *,
    stage: str,
    reason: str,
    error: BaseException | None,
    attempts: int = 1,
    first_failure_ms: int | None = None,
    trace_id: str | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return {
        "dead_letter_id": f"{origin.topic}:{origin.partition}:{origin.offset}:{stage}",
        "topic": origin.topic,
        "partition": origin.partition,
        "offset": origin.offset,
        "key": origin.key,
        "value": origin.value,
        "headers": [{"key": k, "value": v} for k, v in origin.headers],
        "stage": stage,
        "reason": reason,
        "error_class": type(error).__name__ if error is not None else "",
        "error_message": str(error)[:MAX_ERROR_MESSAGE_CHARS] if error is not None else reason,
        "attempts": attempts,
        "first_failure_at": first_failure_ms if first_failure_ms is not None else now_ms,
        "last_failure_at": now_ms,
        "trace_id": trace_id,
    }


def without_payload(record: dict[str, Any]) -> dict[str, Any]:
    """The dead letter without the original key, value and headers, saying what was left out."""
    size = len(record["key"] or b"") + len(record["value"] or b"") + sum(
        len(h["key"].encode("utf-8", "surrogatepass")) + len(h["value"] or b"") for h in record["headers"])
    note = (f" [original key, value and headers ({size} bytes) left out: a dead letter over "
            f"{DEAD_LETTER_MAX_BYTES} bytes cannot be sent; the record stays at "
            f"{record['topic']}:{record['partition']}:{record['offset']} until retention]")
    message = record["error_message"][:MAX_ERROR_MESSAGE_CHARS - len(note)] + note
    return {**record, "key": None, "value": None, "headers": [], "error_message": message}


class DeadLetters:
    """Sends DeadLetter records; the caller awaits the returned futures before acking."""

    def __init__(self, *, topic: faust.TopicT, codecs: AvroCodecs) -> None:
        self.topic = topic
        self.codecs = codecs

    async def send(self, origin: Origin, **details: Any) -> Awaitable[Any]:
        record = dead_letter_record(origin, **details)
        value = self.codecs.encode("DeadLetter", record)
        key = origin.key
        if len(value) + len(key or b"") > DEAD_LETTER_MAX_BYTES:
            record = without_payload(record)
            value, key = self.codecs.encode("DeadLetter", record), None
        metrics.DLQ_EVENTS.labels(record["reason"]).inc()
        log_event(
            "dead_letter", stage=record["stage"], reason=record["reason"],
            origin=record["dead_letter_id"], error=record["error_class"] or None,
            trace_id=record["trace_id"],
        )
        return await self.topic.send(key=key, value=value, force=True)
