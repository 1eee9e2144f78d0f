"""Value rules of the inputs beyond their Avro schema: ids, event-time skew, numeric bounds, text.

Pure (no Faust, no I/O, no settings import), so the decode stage and the offline commands
(reprocess, dlq replay, reconcile) apply the same rules. A record that breaks a rule raises
:class:`Invalid` with a stable ``reason`` (the dead letter's reason and metric label):

============================ ===========================================================
reason                       when
============================ ===========================================================
``invalid_id``               an id (``event_id``, ``review_id``, ``user_id``,
                             ``restaurant_id``, ``order_id``, ``metadata.trace_id``) is
                             empty or whitespace only (``trace_id`` may be empty), has
                             leading or trailing whitespace, is longer than
                             ``id_max_chars``, or holds a character that is not printable
                             (controls, bidi and zero-width format characters, line
                             separators, surrogates, unassigned code points: exactly what
                             ``str.isprintable`` refuses, the ASCII space aside)
``invalid_value``            ``entity.rating`` outside 1-5
``text_too_long``            ``entity.text`` longer than ``text_max_chars``
``field_too_long``           ``entity.language`` longer than ``language_max_chars``, or
                             ``metadata.source`` longer than ``source_max_chars``
``record_too_large``         the record's key, value and headers together are more than
                             ``record_max_bytes`` (checked before decoding:
                             :func:`check_record_size`)
``event_time_in_future``     ``occurred_at`` later than now + ``max_future_skew_ms``
``event_time_too_old``       ``occurred_at`` earlier than now - ``max_age_ms``
``invalid_delivery_time``    ``promised_at`` or ``delivered_at`` more than
                             :data:`DELIVERY_SPAN_MAX_MS` away from ``occurred_at``
============================ ===========================================================

Why the size caps: decode forwards each record to the by-restaurant topic as JSON beside
its original bytes in base64, about 2.3 times its size (up to 7.3 times for strings of
control characters, which JSON escapes as six bytes each). Without caps an input of about
450 KB makes a record the producer refuses as too large, and a record refused for its size
is refused again on every retry (issue 30, finding 4). With every string field capped,
the decoded record is a few tens of KB at most; the record cap bounds the original bytes
the internal records and dead letters carry (a newer writer schema may add fields our
reader drops, and keys and headers are the producer's).

Why these bounds: a far-future ``occurred_at`` would advance the input watermark and
close (or make the closer enumerate) windows that have not happened yet; a very old one
lies beyond the dedupe table's memory (``dedupe_ttl_s``), so a replay of it could be
counted twice. With ``occurred_at`` bounded and each delivery time within 30 days of it,
a delivery delay is below 2^32 ms, and a window can sum 2^31 of them before a signed
64-bit sum could overflow. Ratings are 1-5, so rating sums cannot overflow either.

Review text is never rejected for its characters: :func:`clean_text` normalises it
before it reaches the LLM (and the outputs that store the text the LLM saw): NFC,
``\\r\\n``/``\\r`` to ``\\n``, C0 and C1 controls other than ``\\t`` and ``\\n`` removed,
bidi embeddings, overrides, isolates and marks removed, invisible zero-width characters
(U+200B, U+2060, U+FEFF, soft hyphen) removed, lone surrogates replaced by U+FFFD. Emoji
and every other non-BMP character are kept, and so are ZWJ/ZWNJ (emoji sequences).
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.errors import ReviewPulseError

#: Longest distance of ``promised_at``/``delivered_at`` from the order's ``occurred_at``:
#: no delivery is promised or made a month away from its event, and 30 days in ms is
#: below 2^32, which keeps every delay sum of a window far from 64-bit overflow.
DELIVERY_SPAN_MAX_MS = 30 * 24 * 3600 * 1000

#: Defaults of the bounds (the Settings fields of the same names carry the same values).
DEFAULT_TEXT_MAX_CHARS = 5_000
DEFAULT_ID_MAX_CHARS = 128  # a UUID is 36 characters; prefixed ids stay well under 128
DEFAULT_LANGUAGE_MAX_CHARS = 35  # RFC 5646 §4.4.1: implementations need not hold longer tags
DEFAULT_SOURCE_MAX_CHARS = 128  # a service name ("api.review"); the id cap's size is plenty
# 128 KiB: under Faust's producer max request size (1,000,000 bytes; Kafka's default topic
# limit is 1 MiB) divided by the worst by-restaurant expansion (7.3 times, a record of
# control characters), so even that record forwards; an ordinary review is ~200 bytes and
# one at every field cap ~25 KB.
DEFAULT_RECORD_MAX_BYTES = 128 * 1024
DEFAULT_MAX_FUTURE_SKEW_MS = 300_000  # 5 min: producers' clocks are NTP-synced, not exact
DEFAULT_MAX_AGE_MS = 7 * 24 * 3600 * 1000  # the default dedupe TTL: older could count twice

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class Invalid(ReviewPulseError):
    """A decoded value that breaks a rule of ours; ``reason`` labels the dead letter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return self.detail

    def __repr__(self) -> str:
        return f"Invalid({self.reason!r}, {self.detail!r})"


@dataclass(frozen=True, slots=True)
class Bounds:
    """The limits :func:`validate_review` and :func:`validate_order` apply."""

    text_max_chars: int = DEFAULT_TEXT_MAX_CHARS
    id_max_chars: int = DEFAULT_ID_MAX_CHARS
    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS
    max_age_ms: int = DEFAULT_MAX_AGE_MS
    language_max_chars: int = DEFAULT_LANGUAGE_MAX_CHARS
    source_max_chars: int = DEFAULT_SOURCE_MAX_CHARS
    record_max_bytes: int = DEFAULT_RECORD_MAX_BYTES

    @classmethod
    def from_settings(cls, settings: Any) -> Bounds:
        """The bounds of a :class:`streams.settings.Settings` (duck-typed: no import cycle)."""
        return cls(
            text_max_chars=settings.text_max_chars,
            id_max_chars=settings.id_max_chars,
            max_future_skew_ms=int(settings.event_time_max_skew_s * 1000),
            max_age_ms=int(settings.event_time_max_age_s * 1000),
            language_max_chars=settings.language_max_chars,
            source_max_chars=settings.source_max_chars,
            record_max_bytes=settings.max_input_record_bytes,
        )


def record_size(*, key: bytes | None, value: bytes | None,
                headers: Iterable[tuple[str, bytes | None]] = ()) -> int:
    """Bytes of a record's key, value and headers: what it carries into every copy of it."""
    size = len(key or b"") + len(value or b"")
    for name, data in headers:
        size += len(name.encode("utf-8", "surrogatepass")) + len(data or b"")
    return size


def check_record_size(*, key: bytes | None, value: bytes | None,
                      headers: Iterable[tuple[str, bytes | None]] = (), max_bytes: int) -> None:
    """Raise ``Invalid("record_too_large", ...)`` when the record is over ``max_bytes``."""
    size = record_size(key=key, value=value, headers=headers)
    if size > max_bytes:
        raise Invalid("record_too_large",
                      f"record has {size} bytes of key, value and headers, cap is {max_bytes}")


def check_length(field: str, value: Any, *, max_chars: int) -> None:
    """Raise ``Invalid("field_too_long", ...)`` when a string field is over ``max_chars``."""
    if isinstance(value, str) and len(value) > max_chars:
        raise Invalid("field_too_long", f"{field} has {len(value)} chars, cap is {max_chars}")


def check_id(field: str, value: Any, *, max_chars: int, allow_empty: bool = False) -> None:
    """Raise ``Invalid("invalid_id", ...)`` unless ``value`` is a usable id (see module doc)."""
    if not isinstance(value, str):
        raise Invalid("invalid_id", f"{field} is {type(value).__name__}, not a string")
    if not value:
        if allow_empty:
            return
        raise Invalid("invalid_id", f"{field} is empty")
    if len(value) > max_chars:
        raise Invalid("invalid_id", f"{field} has {len(value)} chars, cap is {max_chars}")
    if not value.strip():
        raise Invalid("invalid_id", f"{field} is whitespace only")
    if value[0].isspace() or value[-1].isspace():
        raise Invalid("invalid_id", f"{field} has leading or trailing whitespace")
    if not value.isprintable():
        bad = next(ch for ch in value if not ch.isprintable())
        raise Invalid("invalid_id", f"{field} holds the non-printable character U+{ord(bad):04X}")


def check_event_time(occurred_ms: int, *, now_ms: int, bounds: Bounds) -> None:
    """Raise unless ``occurred_ms`` lies in [now - max age, now + max future skew]."""
    if occurred_ms > now_ms + bounds.max_future_skew_ms:
        raise Invalid("event_time_in_future",
                      f"occurred_at is {occurred_ms - now_ms} ms ahead of the clock, "
                      f"skew cap is {bounds.max_future_skew_ms} ms")
    if occurred_ms < now_ms - bounds.max_age_ms:
        raise Invalid("event_time_too_old",
                      f"occurred_at is {now_ms - occurred_ms} ms old, cap is {bounds.max_age_ms} ms")


def _ms(field: str, value: Any) -> int:
    """Epoch ms of a decoded timestamp field: an int after schema_registry's normalisation,
    a datetime from a decoder without it (naive means UTC, as the normalisation reads it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (moment - _EPOCH) // _ONE_MS
    raise Invalid("invalid_value", f"{field} is not a timestamp: {value!r}")


def _now_ms(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


def validate_review(review: Mapping[str, Any], *, text_max_chars: int | None = None,
                    bounds: Bounds | None = None, now_ms: int | None = None) -> None:
    """Raise :class:`Invalid` unless a decoded ``ReviewCreated`` keeps every rule.

    ``now_ms`` is the clock the event time is judged against (the wall clock by default;
    offline commands pass the record's Kafka timestamp so a re-run judges alike).
    ``text_max_chars``, when given, overrides ``bounds.text_max_chars``.
    """
    bounds = bounds or Bounds()
    text_cap = text_max_chars if text_max_chars is not None else bounds.text_max_chars
    entity = review["entity"]
    cap = bounds.id_max_chars
    check_id("event_id", review["event_id"], max_chars=cap)
    check_id("entity.review_id", entity["review_id"], max_chars=cap)
    check_id("entity.user_id", entity["user_id"], max_chars=cap)
    check_id("entity.restaurant_id", entity["restaurant_id"], max_chars=cap)
    if entity.get("order_id") is not None:
        check_id("entity.order_id", entity["order_id"], max_chars=cap)
    check_id("metadata.trace_id", review["metadata"]["trace_id"], max_chars=cap, allow_empty=True)
    check_length("metadata.source", review["metadata"]["source"], max_chars=bounds.source_max_chars)
    check_length("entity.language", entity.get("language"), max_chars=bounds.language_max_chars)
    rating = entity["rating"]
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise Invalid("invalid_value", f"entity.rating is {rating!r}, expected 1 to 5")
    if len(entity["text"]) > text_cap:
        raise Invalid("text_too_long", f"entity.text has {len(entity['text'])} chars, cap is {text_cap}")
    check_event_time(_ms("occurred_at", review["occurred_at"]), now_ms=_now_ms(now_ms), bounds=bounds)


def validate_order(order: Mapping[str, Any], *, bounds: Bounds | None = None,
                   now_ms: int | None = None) -> None:
    """Raise :class:`Invalid` unless a decoded ``OrderDelivered`` keeps every rule."""
    bounds = bounds or Bounds()
    cap = bounds.id_max_chars
    check_id("event_id", order["event_id"], max_chars=cap)
    check_id("order_id", order["order_id"], max_chars=cap)
    check_id("restaurant_id", order["restaurant_id"], max_chars=cap)
    check_id("metadata.trace_id", order["metadata"]["trace_id"], max_chars=cap, allow_empty=True)
    check_length("metadata.source", order["metadata"]["source"], max_chars=bounds.source_max_chars)
    occurred_ms = _ms("occurred_at", order["occurred_at"])
    check_event_time(occurred_ms, now_ms=_now_ms(now_ms), bounds=bounds)
    for name in ("promised_at", "delivered_at"):
        value_ms = _ms(name, order[name])
        if abs(value_ms - occurred_ms) > DELIVERY_SPAN_MAX_MS:
            raise Invalid("invalid_delivery_time",
                          f"{name} is {value_ms - occurred_ms} ms from occurred_at, "
                          f"cap is {DELIVERY_SPAN_MAX_MS} ms")


# --- review text -----------------------------------------------------------------------------
def _removed_code_points() -> dict[int, int | None]:
    table: dict[int, int | None] = dict.fromkeys(
        [c for c in range(0x20) if c not in (0x09, 0x0A)] + [0x7F], None)  # C0 but \t \n, DEL
    table[0x0D] = 0x0A  # \r alone becomes \n (\r\n is folded before the table applies)
    table.update(dict.fromkeys(range(0x80, 0xA0)))  # C1 controls
    table.update(dict.fromkeys(range(0x202A, 0x202F)))  # LRE RLE PDF LRO RLO
    table.update(dict.fromkeys(range(0x2066, 0x206A)))  # LRI RLI FSI PDI
    table.update(dict.fromkeys((0x200E, 0x200F, 0x061C)))  # LRM RLM ALM
    table.update(dict.fromkeys((0x200B, 0x2060, 0xFEFF, 0x00AD)))  # ZWSP WJ BOM soft hyphen
    table.update(dict.fromkeys(range(0xD800, 0xE000), 0xFFFD))  # lone surrogates
    return table


_TEXT_TABLE = _removed_code_points()


def clean_text(text: str) -> str:
    """The review text as the LLM sees it (see the module docstring for what changes)."""
    if not text.isascii() or not text.isprintable():
        text = text.replace("\r\n", "\n").translate(_TEXT_TABLE)
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
    return text
