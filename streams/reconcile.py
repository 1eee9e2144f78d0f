"""``reviewpulse reconcile``: prove that every input record of a time range ended somewhere.

DESIGN §3: every input record ends in exactly one of an output, the DLQ (with a reason),
or a counted duplicate. This module reads the inputs (``reviews.created``,
``orders.delivered``) and what they can end in (``reviews.enriched``, ``reviewpulse.dlq``,
and ``reviews.retry`` for reviews still waiting for a redelivery), and classifies each
input record of ``[from, to)``, per input topic, as exactly one of:

``enriched``       a review whose ``event_id`` is on ``reviews.enriched``
``folded``         an order that decoded and was not dead-lettered. An order has no
                   per-event output (it is folded into its restaurant's window panes), so
                   orders are *not individually traceable*: they are counted, never listed
                   as missing; the window ground-truth test checks the aggregates instead.
``dead_lettered``  a dead letter names this record's coordinates (its own
                   ``topic/partition/offset``, or the ``rp-origin`` header a later stage
                   keeps), or, for a review without an output, its ``event_id``
``duplicate``      a later copy of an ``event_id`` already seen in the range
``in_retry``       a review with neither output nor dead letter, but a copy on
                   ``reviews.retry``: still in flight, run again later
``missing``        none of these: listed by ``event_id`` (by ``topic:partition:offset``
                   when the bytes do not decode); the command exits 1

A dead letter of reason ``llm_exhausted`` accompanies a FALLBACK output (the review is
kept replayable for the LLM), so such a review counts as ``enriched``, and also in
``dead_letter_reasons``.

Which records are in the range: by default a record's time is its ``occurred_at``, or its
Kafka timestamp when ``occurred_at`` cannot be read or lies outside the event-time bounds
around the Kafka timestamp (so a hostile time is counted where the record arrived, not in
1970 or 2262); ``by="produced"`` uses the Kafka timestamp for every record.

The topics are read from their beginning to their end (``streams.topic_io``, which works
around Tansu's ListOffsets): an ``occurred_at`` cannot be sought, and outputs of a range
may be written long after it. Memory holds ids and coordinates, not payloads.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.protocol import ProtocolError, read_item
from streams.settings import Settings
from streams.topics import H_ORIGIN, ORDERS_DELIVERED, RETRY, REVIEWS_CREATED, REVIEWS_ENRICHED
from streams.validation import Bounds, Invalid, check_event_time

INPUTS: dict[str, str] = {REVIEWS_CREATED: "ReviewCreated", ORDERS_DELIVERED: "OrderDelivered"}
# Dead-letter reasons that go with an output rather than instead of one.
OUTPUT_PAIRED_REASONS = frozenset({"llm_exhausted"})
BY_OCCURRED = "occurred"
BY_PRODUCED = "produced"

Coordinates = tuple[str, int, int]


# --- what is read ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InputRecord:
    """One record of an input topic, as far as it decodes."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the Kafka timestamp
    event_id: str | None = None  # None: the bytes do not decode
    occurred_ms: int | None = None

    @property
    def coordinates(self) -> Coordinates:
        return (self.topic, self.partition, self.offset)

    @property
    def label(self) -> str:
        return self.event_id if self.event_id is not None else \
            f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class LetterRef:
    """What reconcile needs of one DeadLetter."""

    dead_letter_id: str
    reason: str
    coordinates: frozenset[Coordinates]  # its own and, when a later stage kept it, rp-origin's
    event_id: str | None = None  # of the original value, when it decodes as a review


@dataclass
class Observed:
    """Everything read from the topics: inputs, and the ids and coordinates they ended in."""

    inputs: list[InputRecord] = field(default_factory=list)
    enriched_ids: set[str] = field(default_factory=set)
    letters: list[LetterRef] = field(default_factory=list)
    retry_ids: set[str] = field(default_factory=set)


# --- the accounting (pure) ---------------------------------------------------------------------
@dataclass
class TopicReport:
    """Per input topic: every in-range record in exactly one bucket; missing ones listed."""

    topic: str
    consumed: int = 0
    enriched: int = 0
    folded: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    in_retry: int = 0
    missing: list[str] = field(default_factory=list)
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    traceable: bool = True  # False for orders: no per-event output

    @property
    def accounted(self) -> int:
        return (self.enriched + self.folded + self.dead_lettered + self.duplicates
                + self.in_retry + len(self.missing))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["dead_letter_reasons"] = dict(self.dead_letter_reasons.most_common())
        return out


def parse_origin(headers: Iterable[Mapping[str, Any]]) -> Coordinates | None:
    """The ``rp-origin`` header (``topic:partition:offset``) of a dead letter, if well formed."""
    for h in headers:
        if h.get("key") != H_ORIGIN or not h.get("value"):
            continue
        try:
            topic, partition, offset = bytes(h["value"]).decode().rsplit(":", 2)
            return (topic, int(partition), int(offset))
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def record_time_ms(record: InputRecord, *, by: str, bounds: Bounds) -> int:
    """The time that places ``record`` in a range (see the module docstring)."""
    if by == BY_PRODUCED or record.occurred_ms is None:
        return record.timestamp_ms
    try:
        check_event_time(record.occurred_ms, now_ms=record.timestamp_ms, bounds=bounds)
    except Invalid:
        return record.timestamp_ms
    return record.occurred_ms


def account(observed: Observed, *, from_ms: int, to_ms: int, by: str = BY_OCCURRED,
            bounds: Bounds | None = None) -> dict[str, TopicReport]:
    """Classify every input record of ``[from_ms, to_ms)``; one report per input topic."""
    if to_ms <= from_ms:
        raise ValueError("--to must be after --from")
    if by not in (BY_OCCURRED, BY_PRODUCED):
        raise ValueError(f"by must be {BY_OCCURRED!r} or {BY_PRODUCED!r}, not {by!r}")
    bounds = bounds or Bounds()
    by_coordinates: dict[Coordinates, list[LetterRef]] = {}
    letter_ids: set[str] = set()
    for letter in observed.letters:
        for coordinates in letter.coordinates:
            by_coordinates.setdefault(coordinates, []).append(letter)
        if letter.event_id is not None:
            letter_ids.add(letter.event_id)

    reports = {topic: TopicReport(topic, traceable=topic != ORDERS_DELIVERED) for topic in INPUTS}
    seen: dict[str, set[str]] = {topic: set() for topic in INPUTS}
    in_range = [r for r in observed.inputs
                if from_ms <= record_time_ms(r, by=by, bounds=bounds) < to_ms]
    # Kafka time, then position: "a later copy" means the same thing on every run.
    for record in sorted(in_range, key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset)):
        report = reports[record.topic]
        report.consumed += 1
        letters = by_coordinates.get(record.coordinates, [])
        report.dead_letter_reasons.update(x.reason for x in letters)
        if any(x.reason not in OUTPUT_PAIRED_REASONS for x in letters):
            report.dead_lettered += 1  # this copy failed on its own (decode, validation...)
            continue
        if record.event_id is None:
            report.missing.append(record.label)  # undecodable and not dead-lettered
            continue
        if record.event_id in seen[record.topic]:
            report.duplicates += 1
            continue
        seen[record.topic].add(record.event_id)
        if not report.traceable:
            report.folded += 1
        elif record.event_id in observed.enriched_ids:
            report.enriched += 1
        elif letters or record.event_id in letter_ids:
            report.dead_lettered += 1
        elif record.event_id in observed.retry_ids:
            report.in_retry += 1
        else:
            report.missing.append(record.label)
    return reports


# --- reading the topics ------------------------------------------------------------------------
async def _event_fields(codecs: Any, record_name: str, value: bytes | None
                        ) -> tuple[str | None, int | None]:
    """(event_id, occurred_at ms) of an input value, or (None, None) when it does not decode."""
    from schema_registry.errors import SerdeError
    from streams.codecs import to_ms

    if value is None:
        return None, None
    try:
        decoded = await codecs.decode(record_name, value)
        event_id = decoded["event_id"]
        return (event_id if isinstance(event_id, str) else None), to_ms(decoded["occurred_at"])
    except (SerdeError, KeyError, TypeError, ValueError, OverflowError):
        return None, None


def observe(settings: Settings) -> Observed:
    """Read the inputs, ``reviews.enriched``, ``reviews.retry`` and the DLQ to their ends."""
    from streams.codecs import AvroCodecs
    from streams.topic_io import iter_topic, read_dead_letters

    observed = Observed()

    async def go() -> None:
        codecs = AvroCodecs(settings)
        try:
            for topic, record_name in INPUTS.items():
                for raw in iter_topic(settings, topic):
                    event_id, occurred_ms = await _event_fields(codecs, record_name, raw.value)
                    observed.inputs.append(InputRecord(topic, raw.partition, raw.offset,
                                                       raw.timestamp_ms, event_id, occurred_ms))
            for raw in iter_topic(settings, REVIEWS_ENRICHED):
                event_id, _ = await _event_fields(codecs, "ReviewEnriched", raw.value)
                if event_id is not None:
                    observed.enriched_ids.add(event_id)
            for raw in iter_topic(settings, RETRY):  # internal JSON (streams.protocol)
                try:
                    observed.retry_ids.add(read_item(raw.value).event_id)
                except ProtocolError:
                    continue
            for letter in read_dead_letters(settings):
                own = (letter["topic"], letter["partition"], letter["offset"])
                origin = parse_origin(letter["headers"])
                event_id = None
                if letter["topic"] not in INPUTS or origin is not None:
                    event_id, _ = await _event_fields(codecs, "ReviewCreated", letter["value"])
                observed.letters.append(LetterRef(
                    letter["dead_letter_id"], letter["reason"],
                    frozenset({own} | ({origin} if origin else set())), event_id))
        finally:
            await codecs.stop()

    asyncio.run(go())
    return observed


# --- printing ----------------------------------------------------------------------------------
def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def format_reports(reports: Mapping[str, TopicReport], *, from_ms: int, to_ms: int, by: str
                   ) -> list[str]:
    """The human report: one line per input topic, the reasons, then every missing id."""
    how = ("by occurred_at (Kafka time when unreadable or out of bounds)" if by == BY_OCCURRED
           else "by Kafka timestamp")
    lines = [f"reconcile [{iso_ms(from_ms)}, {iso_ms(to_ms)}) {how}"]
    for r in reports.values():
        outcome = (f"enriched {r.enriched}" if r.traceable
                   else f"folded {r.folded} (orders are not individually traceable)")
        lines.append(f"{r.topic:18} consumed {r.consumed}  {outcome}  dead-lettered {r.dead_lettered}"
                     f"  duplicates {r.duplicates}  in retry {r.in_retry}  missing {len(r.missing)}")
        if r.dead_letter_reasons:
            lines.append("  dead-letter reasons: " + ", ".join(
                f"{reason} {n}" for reason, n in r.dead_letter_reasons.most_common()))
    missing = [(r.topic, m) for r in reports.values() for m in r.missing]
    lines.append(f"missing: {len(missing)}" if missing else "missing: none")
    lines.extend(f"  {topic} {label}" for topic, label in missing)
    return lines


def any_missing(reports: Mapping[str, TopicReport]) -> bool:
    return any(r.missing for r in reports.values())


def reports_json(reports: Mapping[str, TopicReport], *, from_ms: int, to_ms: int, by: str
                 ) -> dict[str, Any]:
    return {"from_ms": from_ms, "to_ms": to_ms, "by": by,
            "topics": {topic: r.to_json() for topic, r in reports.items()},
            "missing": sum(len(r.missing) for r in reports.values())}


def reconcile(settings: Settings, *, from_ms: int, to_ms: int, by: str = BY_OCCURRED
              ) -> dict[str, TopicReport]:
    """Read the topics and account for ``[from_ms, to_ms)`` (the command's whole job)."""
    if to_ms <= from_ms:
        raise ValueError("--to must be after --from")
    return account(observe(settings), from_ms=from_ms, to_ms=to_ms, by=by,
                   bounds=Bounds.from_settings(settings))

