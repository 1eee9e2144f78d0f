"""``reviewpulse trace``: every record of one review, on every topic, in time order.

An operator chasing one complaint (seed 002, "Query por Correlation ID") knows one of a
review's ids: its ``event_id``, its ``review_id`` or its ``trace_id``. This reads, within a
time range (by Kafka timestamp), the input on ``reviews.created``, the by-restaurant record,
each ``reviews.retry`` copy (with its attempt and the failure that caused it),
``reviews.enriched``, the critical alert, the dead letters (with their reasons), and the
final aggregates whose windows hold the review's ``occurred_at`` for its restaurant, each
saying whether the review counted there with its final label or the heuristic's
provisional one. The records are printed in time order with the gap since the one before.

How the ids meet: the input is found by any of the three ids; the other topics are matched
by the ``event_id`` the input gave (and by ``trace_id`` for dead letters of records too
broken to decode). Without its input in the range, a review is still traced by ``event_id``
or ``trace_id`` on the outputs.

Each topic is read from the first offset at or after ``--from`` to its end
(``offsets_for_times``, :func:`streams.topic_io.read_time_range`), keeping the records
before ``--to``: a range around the review is cheap on a topic of any length.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from streams import protocol
from streams.codecs import to_ms as epoch_ms  # `to_ms` names the range's end here
from streams.protocol import ProtocolError, read_item
from streams.reconcile import iso_ms as iso
from streams.settings import Settings
from streams.topics import (
    AGGREGATES,
    CRITICAL_ALERT,
    DLQ,
    RETRY,
    REVIEWS_CREATED,
    REVIEWS_ENRICHED,
    by_restaurant_topic_name,
)

WINDOW_KINDS = ("TUMBLING", "HOPPING")
DEFAULT_SPAN_MS = 86_400_000  # without --from: the last 24 hours


@dataclass(frozen=True)
class Wanted:
    """The ids asked for; the input, once found, fills in the others."""

    event_id: str | None = None
    review_id: str | None = None
    trace_id: str | None = None

    def __post_init__(self) -> None:
        if not (self.event_id or self.review_id or self.trace_id):
            raise ValueError("give one of --event-id, --review-id or --trace-id")

    def matches(self, *, event_id: Any = None, review_id: Any = None, trace_id: Any = None) -> bool:
        return bool((self.event_id and event_id == self.event_id)
                    or (self.review_id and review_id == self.review_id)
                    or (self.trace_id and trace_id == self.trace_id))


@dataclass(frozen=True)
class Step:
    """One record of the review's timeline."""

    time_ms: int  # the record's Kafka timestamp
    topic: str
    partition: int
    offset: int
    what: str  # one line: what this record says about the review
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timeline:
    event_id: str | None
    review_id: str | None
    trace_id: str | None
    restaurant_id: str | None
    occurred_ms: int | None
    steps: list[Step] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "steps"}
        previous: int | None = None
        rows = []
        for step in self.steps:
            rows.append({**asdict(step), "time": iso(step.time_ms),
                         "gap_ms": None if previous is None else step.time_ms - previous})
            previous = step.time_ms
        return {**out, "steps": rows}




# --- building the timeline from decoded records (no Kafka: unit-tested) ------------------------
@dataclass(frozen=True)
class Seen:
    """A decoded record of one topic: where it is, when, and its value."""

    topic: str
    partition: int
    offset: int
    time_ms: int
    value: Any  # a decoded Avro dict, an internal Item, or a dead letter dict


def build(wanted: Wanted, records: dict[str, list[Seen]]) -> Timeline:
    """The timeline of the review ``wanted`` names, from each topic's decoded records.

    ``records`` maps a topic to its records: Avro dicts for ``reviews.created``,
    ``reviews.enriched``, ``reviews.critical_alert`` and the aggregates, :class:`Item` for
    by-restaurant and ``reviews.retry``, dead-letter dicts (with ``original``, the decoded
    input when it decodes) for the DLQ.
    """
    inputs = [r for r in records.get(REVIEWS_CREATED, [])
              if wanted.matches(event_id=r.value.get("event_id"),
                                review_id=r.value.get("entity", {}).get("review_id"),
                                trace_id=r.value.get("metadata", {}).get("trace_id"))]
    first = inputs[0].value if inputs else None
    event_id = first["event_id"] if first else wanted.event_id
    trace_id = first["metadata"]["trace_id"] if first else wanted.trace_id
    review_id = first["entity"]["review_id"] if first else wanted.review_id
    timeline = Timeline(event_id=event_id, review_id=review_id, trace_id=trace_id,
                        restaurant_id=first["entity"]["restaurant_id"] if first else None,
                        occurred_ms=epoch_ms(first["occurred_at"]) if first else None)
    ids = Wanted(event_id=event_id, review_id=review_id, trace_id=trace_id)
    steps = timeline.steps
    for r in inputs:
        steps.append(Step(r.time_ms, r.topic, r.partition, r.offset,
                          "created" if r is inputs[0] else "created again (an upstream copy)",
                          {"source": r.value["metadata"].get("source")}))
    for topic, records_of in records.items():
        if topic in (REVIEWS_CREATED, DLQ, AGGREGATES):
            continue
        for r in records_of:
            step = _output_step(r, ids)
            if step is not None:
                steps.append(step)
                if timeline.restaurant_id is None and topic == REVIEWS_ENRICHED:
                    timeline.restaurant_id = r.value["restaurant_id"]
                    timeline.occurred_ms = epoch_ms(r.value["occurred_at"])
    for r in records.get(DLQ, []):
        letter, original = r.value, r.value.get("original") or {}
        if ids.matches(event_id=original.get("event_id"), trace_id=letter.get("trace_id")):
            steps.append(Step(r.time_ms, r.topic, r.partition, r.offset,
                              f"dead letter at {letter['stage']}: {letter['reason']}",
                              {"reason": letter["reason"], "stage": letter["stage"],
                               "error_class": letter["error_class"], "attempts": letter["attempts"],
                               "from": f"{letter['topic']}:{letter['partition']}:{letter['offset']}"}))
    steps += _aggregate_steps(timeline, records.get(AGGREGATES, []),
                              answered_ms=_answered_ms(steps))
    steps.sort(key=lambda s: (s.time_ms, s.topic, s.partition, s.offset))
    return timeline


def _output_step(r: Seen, ids: Wanted) -> Step | None:
    value = r.value
    if r.topic == REVIEWS_ENRICHED:
        if not _names(ids, value):
            return None
        reason = f", {value['budget_reason']}" if value.get("budget_reason") else ""
        return Step(r.time_ms, r.topic, r.partition, r.offset,
                    f"enriched {value['status']}{reason}: {value['sentiment']} by {value['model']}",
                    {"status": value["status"], "sentiment": value["sentiment"], "model": value["model"],
                     "prompt_version": value["prompt_version"], "attempts": value["attempts"],
                     "cache_hit": value["cache_hit"], "processing_lag_ms": value["processing_lag_ms"]})
    if r.topic == CRITICAL_ALERT:
        if not _names(ids, value):
            return None
        return Step(r.time_ms, r.topic, r.partition, r.offset,
                    f"critical alert: rating {value['rating']}, score {value['sentiment_score']:.2f}",
                    {"alert_id": value["alert_id"]})
    # by-restaurant and reviews.retry carry internal items
    if not ids.matches(event_id=value.event_id, trace_id=value.trace_id):
        return None
    if value.kind == protocol.RETRY:
        why = f" after {value.retry_reason}" if value.retry_reason else ""
        return Step(r.time_ms, r.topic, r.partition, r.offset,
                    f"{'retry' if r.topic == RETRY else 'retry back'}: attempt {value.attempt}{why}",
                    {"attempt": value.attempt, "reason": value.retry_reason,
                     "not_before": iso(value.not_before_ms)})
    if value.kind == protocol.REVIEW:
        return Step(r.time_ms, r.topic, r.partition, r.offset, "decoded, to its restaurant's partition",
                    {"from": f"{value.origin.topic}:{value.origin.partition}:{value.origin.offset}"})
    return None


def _names(ids: Wanted, value: dict[str, Any]) -> bool:
    return ids.matches(event_id=value["event_id"], review_id=value["review_id"], trace_id=value["trace_id"])


def _answered_ms(steps: Iterable[Step]) -> int | None:
    """When the review's final label went out (its first reviews.enriched record)."""
    times = [s.time_ms for s in steps if s.topic == REVIEWS_ENRICHED]
    return min(times) if times else None


def _aggregate_steps(timeline: Timeline, aggregates: Sequence[Seen], *,
                     answered_ms: int | None) -> list[Step]:
    """The final aggregates whose windows hold the review: its restaurant, its occurred_at.

    A window that closed before the review's answer went out counted the heuristic's
    provisional label (reported in its ``provisional_labels``); one that closed after counted
    the final label, the answer having joined its pane first (the stage joins an answer at
    the next batch, before any window of that batch closes).
    """
    if timeline.restaurant_id is None or timeline.occurred_ms is None:
        return []
    steps = []
    for r in aggregates:
        agg = r.value
        start, end = epoch_ms(agg["window_start"]), epoch_ms(agg["window_end"])
        if agg["restaurant_id"] != timeline.restaurant_id or agg["window_kind"] not in WINDOW_KINDS \
                or not start <= timeline.occurred_ms < end:
            continue
        closed = epoch_ms(agg["closed_at"])
        label = "final" if answered_ms is not None and answered_ms <= closed else "provisional"
        steps.append(Step(r.time_ms, r.topic, r.partition, r.offset,
                          f"counted in the {agg['window_kind'].lower()} window {iso(start)} to {iso(end)} "
                          f"with its {label} label",
                          {"aggregate_id": agg["aggregate_id"], "label": label, "reviews": agg["reviews"],
                           "provisional_labels": agg["provisional_labels"]}))
    return steps


# --- reading the topics ------------------------------------------------------------------------
AVRO = {REVIEWS_CREATED: "ReviewCreated", REVIEWS_ENRICHED: "ReviewEnriched",
        CRITICAL_ALERT: "CriticalAlert", AGGREGATES: "RestaurantWindowAggregate"}


def read(settings: Settings, *, from_ms: int, to_ms: int) -> dict[str, list[Seen]]:
    """Every topic a review passes through, decoded, within ``[from_ms, to_ms)``."""
    from schema_registry.errors import SerdeError
    from streams.codecs import AvroCodecs
    from streams.topic_io import read_dead_letters, read_time_range

    def raw(topic: str) -> list[Any]:
        try:
            return read_time_range(settings, from_ms=from_ms, to_ms=to_ms, topic=topic)
        except ValueError:  # the topic does not exist: nothing was ever written to it
            return []

    records: dict[str, list[Seen]] = {}

    async def go() -> None:
        codecs = AvroCodecs(settings)
        try:
            for topic, record_name in AVRO.items():
                seen = records.setdefault(topic, [])
                for r in raw(topic):
                    try:
                        value = await codecs.decode(record_name, r.value) if r.value is not None else None
                    except SerdeError:
                        continue  # not ours to trace (a poison input is traced by its dead letter)
                    if value is not None:
                        seen.append(Seen(topic, r.partition, r.offset, r.timestamp_ms, value))
            for topic in (by_restaurant_topic_name(settings.app_id), RETRY):
                seen = records.setdefault(topic, [])
                for r in raw(topic):
                    try:
                        seen.append(Seen(topic, r.partition, r.offset, r.timestamp_ms, read_item(r.value)))
                    except ProtocolError:
                        continue  # a tick, or not an item
            letters = records.setdefault(DLQ, [])
            for letter in read_dead_letters(settings, since_ms=from_ms):
                when = epoch_ms(letter["last_failure_at"])
                if not from_ms <= when < to_ms:
                    continue
                original = None
                if letter["topic"] == REVIEWS_CREATED and letter["value"] is not None:
                    try:
                        original = await codecs.decode("ReviewCreated", letter["value"])
                    except SerdeError:
                        original = None
                letters.append(Seen(DLQ, -1, -1, when, {**letter, "original": original}))
        finally:
            await codecs.stop()

    asyncio.run(go())
    return records


def time_range(from_ms: int | None, to_ms: int | None, *, now_ms: int,
               span_ms: int = DEFAULT_SPAN_MS) -> tuple[int, int]:
    """``[from, to)`` with the ends not given filled in as the CLI does: up to now included,
    from ``span_ms`` before the end (the web view passes a span no wider than its limit)."""
    end = now_ms + 1 if to_ms is None else to_ms
    return (end - span_ms if from_ms is None else from_ms), end


def trace(settings: Settings, wanted: Wanted, *, from_ms: int, to_ms: int) -> Timeline:
    if to_ms <= from_ms:
        raise ValueError("--to must be after --from")
    return build(wanted, read(settings, from_ms=from_ms, to_ms=to_ms))


def format_timeline(timeline: Timeline) -> list[str]:
    lines = [f"review {timeline.review_id} event {timeline.event_id} trace {timeline.trace_id} "
             f"restaurant {timeline.restaurant_id}"
             + (f" occurred {iso(timeline.occurred_ms)}" if timeline.occurred_ms is not None else "")]
    previous: int | None = None
    for step in timeline.steps:
        gap = "" if previous is None else f"+{(step.time_ms - previous) / 1000:.3f}s"
        where = f"{step.topic}" if step.partition < 0 else f"{step.topic}[{step.partition}]@{step.offset}"
        lines.append(f"{iso(step.time_ms)} {gap:>10}  {where:<36} {step.what}")
        previous = step.time_ms
    return lines
