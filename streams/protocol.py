"""Every internal format in one place: headers, the by-restaurant payload, ticks, state keys.

Internal topics (``<app>-by-restaurant``, ``reviews.retry``) carry a JSON payload, not the
producer's Avro: decode validated the record once and later stages read what it wrote
(one Avro decode per record). The payload keeps the producer's key, value and headers
byte for byte, so any later stage can still dead-letter exactly what arrived.

State keys live in namespaces no user value can reach: a restaurant's closure record is
``r:<id>`` and internal bookkeeping keys start with ``~``, so a restaurant called ``~p0``
cannot overwrite a partition index. Pane and day keys end in ``|<int>``: the integer is
read from the right, so a ``|`` inside a restaurant id is harmless.

Anything that reads an internal record goes through :func:`read_item` or
:func:`read_tick`; a malformed or forged record raises :class:`ProtocolError` (its
record is dead-lettered with reason ``bad_internal_record``), never a foreign error.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.errors import ReviewPulseError

# --- headers ------------------------------------------------------------------------------
H_ID = "rp-id"  # deterministic id of a final aggregate or alert (exactly-once outbox)
H_REPLAY = "rp-replay"  # set by `reviewpulse dlq replay` on the records it re-publishes
H_TRACE = "trace_id"  # the producer's trace id, on every record ReviewPulse writes
H_ORIGIN = "rp-origin"  # topic:partition:offset of an input record (dead letters of older versions)

# --- by-restaurant / retry payload kinds ---------------------------------------------------
REVIEW = "review"
ORDER = "order"
RETRY = "retry"  # a review coming back from reviews.retry: enrich it again, never fold it
TICK = "tick"
ITEM_KINDS = (REVIEW, ORDER, RETRY)


class ProtocolError(ReviewPulseError):
    """An internal record that does not follow this module's format (a bug or a forgery)."""

    reason = "bad_internal_record"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record was read from, with its bytes: what a dead letter keeps for replay."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None  # the record's Kafka timestamp: when it reached Kafka

    @classmethod
    def of(cls, message: Any) -> Origin:
        headers = message.headers or ()
        items = headers.items() if isinstance(headers, dict) else headers
        stamp = getattr(message, "timestamp", None)  # Faust: float seconds
        return cls(topic=message.topic, partition=message.partition, offset=message.offset,
                   key=message.key, value=message.value,
                   headers=tuple((str(k), v) for k, v in items),
                   timestamp_ms=int(stamp * 1000) if stamp else None)


@dataclass(slots=True)
class Item:
    """A validated input record on its way through the internal topics.

    ``record`` is the Avro record as decode validated it, timestamps as epoch ms.
    ``attempt``, ``not_before_ms``, ``pane_start_ms``, ``late`` and ``first_failure_ms``
    matter only for a retry: which pane the review was folded into at first sight.
    """

    kind: str
    record: dict[str, Any]
    origin: Origin
    attempt: int = 1
    not_before_ms: int = 0
    pane_start_ms: int | None = None
    late: bool = False
    first_failure_ms: int | None = None
    retry_reason: str | None = None  # why the attempt before failed (a retry's, for `trace`)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return str(self.record["event_id"])

    @property
    def restaurant_id(self) -> str:
        entity = self.record["entity"] if self.kind != ORDER else self.record
        return str(entity["restaurant_id"])

    @property
    def occurred_ms(self) -> int:
        return int(self.record["occurred_at"])

    @property
    def trace_id(self) -> str | None:
        return self.record.get("metadata", {}).get("trace_id")


RETRY_REASON_MAX_CHARS = 200  # an LLM error's text: enough to say why, never the payload


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ProtocolError("bytes field is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"bytes field is not base64: {exc}") from exc


def write_item(item: Item) -> bytes:
    origin = item.origin
    payload: dict[str, Any] = {
        "k": item.kind, "r": item.record,
        "o": [origin.topic, origin.partition, origin.offset, origin.timestamp_ms],
        "ok": _b64(origin.key), "ov": _b64(origin.value),
        "oh": [[k, _b64(v)] for k, v in origin.headers],
    }
    if item.kind == RETRY:
        payload.update(a=item.attempt, nb=item.not_before_ms, p=item.pane_start_ms, late=item.late,
                       ff=item.first_failure_ms)
        if item.retry_reason is not None:
            payload["why"] = item.retry_reason
    return orjson.dumps(payload)


def read_item(data: bytes | None) -> Item:
    """The item a by-restaurant or retry record carries; ProtocolError when it is not one."""
    try:
        payload = orjson.loads(data) if data else None
        kind = payload["k"]
        record = payload["r"]
        topic, partition, offset, *stamp = payload["o"]
        if kind not in ITEM_KINDS or not isinstance(record, dict):
            raise ProtocolError(f"unknown internal record kind {kind!r}")
        origin = Origin(topic=str(topic), partition=int(partition), offset=int(offset),
                        key=_unb64(payload.get("ok")), value=_unb64(payload.get("ov")),
                        headers=tuple((str(k), _unb64(v)) for k, v in payload.get("oh") or ()),
                        timestamp_ms=int(stamp[0]) if stamp and stamp[0] is not None else None)
        item = Item(kind=kind, record=record, origin=origin)
        _check_fields(item)
        if kind == RETRY:
            item.attempt = int(payload["a"])
            item.not_before_ms = int(payload["nb"])
            item.pane_start_ms = None if payload.get("p") is None else int(payload["p"])
            item.late = bool(payload.get("late"))
            item.first_failure_ms = None if payload.get("ff") is None else int(payload["ff"])
            why = payload.get("why")
            item.retry_reason = why[:RETRY_REASON_MAX_CHARS] if isinstance(why, str) else None
            if item.attempt < 1:
                raise ProtocolError("retry attempt must be at least 1")
        return item
    except ProtocolError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ProtocolError(f"malformed internal record: {type(exc).__name__}: {exc}") from exc


_REVIEW_ENTITY = {"review_id": str, "user_id": str, "restaurant_id": str, "rating": int, "text": str}
_ORDER_FIELDS = {"order_id": str, "restaurant_id": str, "promised_at": int, "delivered_at": int}


def _check_fields(item: Item) -> None:
    """Every field a later stage reads, with its type: a forged record fails here, whole,
    before any pane changes, never half-folded or failing later in enrichment."""
    record = item.record
    if not isinstance(record.get("event_id"), str) or not isinstance(record.get("occurred_at"), int):
        raise ProtocolError("internal record without a string event_id and an int occurred_at")
    metadata = record.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("trace_id"), str):
        raise ProtocolError("internal record without metadata.trace_id")
    if item.kind == ORDER:
        fields, where = _ORDER_FIELDS, record
    else:
        fields, where = _REVIEW_ENTITY, record.get("entity")
        if not isinstance(where, dict) or "order_id" not in where:
            raise ProtocolError("internal review record without its entity")
    for name, kind in fields.items():
        value = where.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ProtocolError(f"internal record field {name} is not {kind.__name__}")


# --- ticks ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tick:
    """One worker's input watermarks, sent through every by-restaurant partition.

    ``marks`` holds, per input partition the sender owns (``"topic:partition"``), the
    largest ``occurred_at`` it forwarded, or its clock when that partition is caught up.
    Receivers keep the newest mark of every input partition whoever sent it, so a dead
    worker's partitions hold windows open at their last mark until their new owner ticks.
    ``partitions`` is how many partitions each input topic has (the sender's metadata): no
    watermark exists until every one of them has a mark.
    """

    sender: str
    sent_at_ms: int
    marks: dict[str, int]
    partitions: dict[str, int] = field(default_factory=dict)


def write_tick(tick: Tick) -> bytes:
    return orjson.dumps({"k": TICK, "s": tick.sender, "at": tick.sent_at_ms, "p": tick.marks,
                         "n": tick.partitions})


def kind_of(data: bytes | None) -> str | None:
    """The payload kind, read cheaply: ticks and items start with ``{"k":"<kind>"``."""
    if data and data.startswith(b'{"k":"'):
        end = data.find(b'"', 6)
        if end > 6:
            return data[6:end].decode("ascii", "replace")
    return None


def read_tick(data: bytes | None) -> Tick:
    try:
        payload = orjson.loads(data) if data else None
        if payload["k"] != TICK:
            raise ProtocolError("not a tick")
        marks = payload["p"]
        if not isinstance(marks, dict) or not marks:
            raise ProtocolError("tick without input partition marks")
        tick = Tick(sender=str(payload["s"]), sent_at_ms=int(payload["at"]),
                    marks={str(tp): int(mark) for tp, mark in marks.items()},
                    partitions={str(t): int(n) for t, n in (payload.get("n") or {}).items()})
    except ProtocolError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ProtocolError(f"malformed tick: {type(exc).__name__}: {exc}") from exc
    return tick


# --- state keys -----------------------------------------------------------------------------
def pane_key(restaurant_id: str, pane_start_ms: int) -> str:
    """panes table: one restaurant's pane."""
    return f"{restaurant_id}|{pane_start_ms}"


def closure_key(restaurant_id: str) -> str:
    """closures table: the restaurant's last closed window ends and its live pane starts."""
    return f"r:{restaurant_id}"


# The partition index is split so that a change rewrites one small record: at 100,000
# restaurants over 4 partitions, ~400 entries a bucket instead of one 25,000-entry list.
INDEX_BUCKETS = 64


def index_bucket(restaurant_id: str) -> int:
    return zlib.crc32(restaurant_id.encode("utf-8", "surrogatepass")) % INDEX_BUCKETS


def index_key(partition: int, bucket: int) -> str:
    """closures table: one bucket of the restaurants with state in ``partition``."""
    return f"~p{partition}:{bucket}"


def checkpoint_key(partition: int) -> str:
    """closures table: output offsets reached by ``partition``'s last flush (agents.outbox)."""
    return f"~out{partition}"


def dedupe_mark(offset: int) -> int:
    """dedupe table value: the by-restaurant offset where the event was first folded."""
    return offset


# A batch's dedupe marks travel in one changelog record under a key of their own
# (streams.faust.MarksTable); the key never reaches the table, so it cannot
# shadow an event id (event ids are printable, but nothing forbids one to start with "~").
MARKS_PREFIX = "~marks:"


def marks_key(partition: int, first_offset: int, nonce: str) -> str:
    """dedupe changelog: the record holding one batch's marks. Unique (``nonce``), so
    compaction never folds two batches' marks into one; retention expires it."""
    return f"{MARKS_PREFIX}{partition}:{first_offset}:{nonce}"


def is_marks_key(key: Any) -> bool:
    return isinstance(key, str) and key.startswith(MARKS_PREFIX)


def read_dedupe_mark(value: Any) -> int | None:
    """The first offset, or None for no mark. ``[offset, joined]`` is the older form of a
    review's mark (whether its enrichment joined now lives in its pane)."""
    if value is None:
        return None
    if isinstance(value, list):
        return int(value[0])
    return int(value)


def review_state_key(restaurant_id: str, review_id: str) -> str:
    """review-states table: one review's enrichment state (tables.review_states). The
    restaurant id's length first: no pair of ids can spell another pair's key."""
    return f"{len(restaurant_id)}:{restaurant_id}|{review_id}"


def day_key(restaurant_id: str, day_start_ms: int) -> str:
    """daily-cost table: one restaurant's spend on one UTC day."""
    return f"{restaurant_id}|{day_start_ms}"


def day_of_key(key: str) -> int:
    return int(key.rpartition("|")[2])


def restaurant_of_day_key(key: str) -> str:
    return key.rpartition("|")[0]
