"""Operator tools over the topics: list and replay dead letters, re-enrich a time range.

``dlq list`` reads ``reviewpulse.dlq`` from the beginning (no consumer group). ``dlq
replay`` re-publishes each selected letter's original key, value bytes and headers to its
original topic, with ``rp-replay`` set to how many times it has been replayed, except:

* letters whose bytes can never decode or validate (:data:`PERMANENT_REASONS`) are
  skipped unless ``--reason`` names them (after raising ``text_max_chars``, say);
* ``llm_exhausted`` letters are re-enriched directly (below): their review already has a
  FALLBACK record and its event_id sits in the dedupe table, so a re-published copy would
  be dropped by the restaurant stage as a duplicate.

Replaying twice publishes twice: a copy that fails again yields a new dead letter (the
DLQ is append-only, ``rp-replay`` counts up); a copy that succeeds is enriched once, the
second being dropped by the event_id dedupe; a re-enriched ``llm_exhausted`` review gets
one more ReviewEnriched record per replay.

``reprocess`` re-enriches the ``reviews.created`` records whose Kafka timestamp lies in
``[from, to)`` (offsets found with ``offsets_for_times``). Re-publishing them would be
deduped too, so it calls the LLM itself (``enrich_batch``, no cache, no budgets: the
operator asked for it and saw the dry-run cost) and writes new ReviewEnriched records
(same event_id, the new model and prompt version, header ``rp-reprocess``) to
``reviews.enriched``: consumers keep the newest record per event_id. Windowed aggregates,
alerts and critical alerts are not recomputed. Reviews whose LLM call failed are counted
and not written, so a heuristic answer never overwrites an LLM one. The range is held in
memory: reprocess hours, not months, per run.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agents.llm.labels import ReviewInput
from agents.llm.pricing import Prices, cost_micro_usd
from agents.llm.prompt import PROMPT_VERSION, estimate_review_tokens
from agents.llm.redact import redact_pii
from streams.codecs import parse_time_ms, to_ms  # noqa: F401  (parse_time_ms: re-exported for the CLI)
from streams.settings import Settings
from streams.topic_io import (
    KAFKA_TIMEOUT_S,
    kafka_config,
    read_time_range,
)
from streams.topics import H_REPLAY, H_TRACE, REVIEWS_ENRICHED
from streams.validation import Bounds, Invalid, validate_review

H_REPROCESS = "rp-reprocess"  # "<model>/<prompt version>" on records written by reprocess
REENRICH_REASONS = frozenset({"llm_exhausted"})
# Bytes that are not Avro, do not fit the schema, or break our rules: a replay comes back.
PERMANENT_REASONS = frozenset({
    "unknown_magic_byte", "truncated_payload", "undecodable", "empty_value",
    "invalid_value", "text_too_long", "invalid_id", "event_time_too_old",
    "invalid_delivery_time", "logical_type_mismatch", "field_too_long", "record_too_large",
    "output_too_large",
})  # not event_time_in_future: once its time has come, a replayed copy passes
# The prompt versions this build can render (agents.llm.prompt); a record names one of them.
PROMPT_VERSIONS = (PROMPT_VERSION,)
# Reviews per enrich_batch call while re-enriching: bounds memory of outcomes in flight.
REENRICH_CHUNK = 500


# --- pure parts ------------------------------------------------------------------------------


def _iso(value: datetime | int) -> str:
    return datetime.fromtimestamp(to_ms(value) / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def format_letter(letter: dict[str, Any]) -> str:
    """One line per dead letter: id, reason, stage, error, attempts, trace id, failure times."""
    error = f"{letter['error_class']}: {letter['error_message']}" if letter["error_class"] \
        else letter["error_message"]
    error = " ".join(error.split())[:120]
    return (f"{letter['dead_letter_id']}  reason={letter['reason']}  stage={letter['stage']}  "
            f"attempts={letter['attempts']}  trace_id={letter['trace_id'] or '-'}  "
            f"first={_iso(letter['first_failure_at'])}  last={_iso(letter['last_failure_at'])}  "
            f"error={error!r}")


def count_by_reason(letters: Iterable[dict[str, Any]]) -> Counter[str]:
    return Counter(letter["reason"] for letter in letters)


def select_for_replay(letters: Sequence[dict[str, Any]], *, reasons: Sequence[str] = ()
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(to replay, skipped): with ``reasons``, only those; without, all but permanent ones."""
    if reasons:
        wanted = set(reasons)
        return [x for x in letters if x["reason"] in wanted], []
    chosen = [x for x in letters if x["reason"] not in PERMANENT_REASONS]
    return chosen, [x for x in letters if x["reason"] in PERMANENT_REASONS]


def replay_headers(headers: Iterable[dict[str, Any]]) -> list[tuple[str, bytes | None]]:
    """The original headers, with ``rp-replay`` raised by one (1 on a first replay)."""
    count, out = 0, []
    for h in headers:
        if h["key"] == H_REPLAY:
            count = int(h["value"] or 0)
        else:
            out.append((h["key"], h["value"]))
    return [*out, (H_REPLAY, str(count + 1).encode())]


@dataclass(frozen=True)
class Estimate:
    """What re-enriching some reviews is expected to cost (tokens_out is the allowance)."""

    reviews: int
    tokens_in: int
    tokens_out: int
    cost_micro_usd: int


def estimate_cost(reviews: Iterable[dict[str, Any]], *, settings: Settings) -> Estimate:
    """The same estimate the budgets use: redacted text by chars/4 plus framing, per review."""
    prices = Prices.from_usd_per_mtok(in_usd_per_mtok=settings.llm_price_in_usd_per_mtok,
                                      out_usd_per_mtok=settings.llm_price_out_usd_per_mtok)
    count = tokens_in = tokens_out = 0
    for review in reviews:
        entity = review["entity"]
        text = redact_pii(entity["text"]).text
        t_in, t_out = estimate_review_tokens(
            ReviewInput(review["event_id"], text, entity["rating"], entity["language"]),
            batch_size=settings.llm_batch_size)
        count, tokens_in, tokens_out = count + 1, tokens_in + t_in, tokens_out + t_out
    return Estimate(count, tokens_in, tokens_out,
                    cost_micro_usd(tokens_in=tokens_in, tokens_out=tokens_out, prices=prices))


# --- re-enrichment ---------------------------------------------------------------------------
@dataclass
class ReenrichStats:
    written: int = 0
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)


def _valid(review: dict[str, Any], *, settings: Settings, now_ms: int | None) -> bool:
    """The decode stage's rules (a record it would have dead-lettered is not re-enriched).

    The event time is judged against ``now_ms``, the time the record was produced (its
    Kafka timestamp), not today: re-enriching last month's reviews is the point.
    """
    try:
        validate_review(review, bounds=Bounds.from_settings(settings), now_ms=now_ms)
    except Invalid:
        return False
    return True


async def _decode_reviews(codecs: Any, values: Iterable[tuple[bytes | None, int | None]]
                          ) -> tuple[list[dict[str, Any]], int, int]:
    """(distinct valid reviews, undecodable or invalid, duplicates) in input order, from
    (value bytes, produced-at ms) pairs."""
    from schema_registry.errors import SerdeError

    reviews: dict[str, dict[str, Any]] = {}
    bad = duplicates = 0
    for value, produced_ms in values:
        try:
            review = await codecs.decode("ReviewCreated", value) if value is not None else None
        except SerdeError:
            review = None
        if review is None or not _valid(review, settings=codecs.settings, now_ms=produced_ms):
            bad += 1
            continue
        if review["event_id"] in reviews:
            duplicates += 1
            continue
        reviews[review["event_id"]] = review
    return list(reviews.values()), bad, duplicates


def _llm_client(settings: Settings, *, model: str) -> Any:
    from agents.llm.client import LLMClient

    return LLMClient(
        base_url=settings.llm_base_url, model=model, api_key=settings.llm_api_key_value(),
        timeout_s=settings.llm_timeout_s, max_retries=settings.llm_max_retries,
        backoff_base_s=settings.llm_backoff_base_s, backoff_max_s=settings.llm_backoff_max_s,
        price_in_usd_per_mtok=settings.llm_price_in_usd_per_mtok,
        price_out_usd_per_mtok=settings.llm_price_out_usd_per_mtok,
        max_concurrency=settings.llm_concurrency, json_schema=settings.llm_json_schema_output,
    )


async def _reenrich(settings: Settings, codecs: Any, reviews: Sequence[dict[str, Any]], *,
                    model: str, header: tuple[str, bytes],
                    on_progress: Callable[[int, int], None] | None = None) -> ReenrichStats:
    """Enrich ``reviews`` with the LLM and write the ENRICHED ones to reviews.enriched."""
    from confluent_kafka import Producer

    from agents.llm.batch import enrich_batch
    from agents.llm.outcome import EnrichStatus
    from agents.llm.records import enrich_request, enriched_record

    stats = ReenrichStats()
    producer = Producer({**kafka_config(settings), "linger.ms": 5})
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    async with _llm_client(settings, model=model) as client:
        for start in range(0, len(reviews), REENRICH_CHUNK):
            chunk = reviews[start:start + REENRICH_CHUNK]
            outcomes = await enrich_batch(
                [enrich_request(r) for r in chunk], client=client,
                batch_size=settings.llm_batch_size, concurrency=settings.llm_concurrency)
            enriched_at_ms = int(time.time() * 1000)
            for review, outcome in zip(chunk, outcomes, strict=True):
                if outcome.status is not EnrichStatus.ENRICHED:
                    stats.failed += 1
                    stats.failures[(outcome.error or str(outcome.status)).split(":")[0]] += 1
                    continue
                record = enriched_record(review, outcome, attempts=1, enriched_at_ms=enriched_at_ms)
                producer.produce(
                    REVIEWS_ENRICHED, key=record["restaurant_id"].encode(),
                    value=codecs.encode("ReviewEnriched", record),
                    headers=[(H_TRACE, record["trace_id"].encode()), header], on_delivery=delivered)
                producer.poll(0)
                stats.written += 1
            if on_progress is not None:
                on_progress(start + len(chunk), len(reviews))
    producer.flush(KAFKA_TIMEOUT_S)
    if errors:
        raise RuntimeError(f"{len(errors)} records were not written to {REVIEWS_ENRICHED}: {errors[0]}")
    return stats


@dataclass
class RangeReport:
    records: int  # in the time range
    reviews: list[dict[str, Any]]  # distinct, decodable and valid
    invalid: int
    duplicates: int
    estimate: Estimate


def reprocess(settings: Settings, *, from_ms: int, to_ms: int, model: str | None = None,
              prompt_version: str = PROMPT_VERSION, dry_run: bool = False,
              on_progress: Callable[[int, int], None] | None = None,
              ) -> tuple[RangeReport, ReenrichStats | None]:
    """Estimate, and unless ``dry_run`` re-enrich, the reviews produced in ``[from_ms, to_ms)``."""
    from streams.codecs import AvroCodecs

    if prompt_version not in PROMPT_VERSIONS:
        raise ValueError(f"prompt version {prompt_version!r} unknown; this build has {PROMPT_VERSIONS}")
    model = model or settings.llm_model
    raw = read_time_range(settings, from_ms=from_ms, to_ms=to_ms)

    async def go() -> tuple[RangeReport, ReenrichStats | None]:
        codecs = AvroCodecs(settings)
        try:
            reviews, invalid, duplicates = await _decode_reviews(
                codecs, ((r.value, r.timestamp_ms) for r in raw))
            report = RangeReport(len(raw), reviews, invalid, duplicates,
                                 estimate_cost(reviews, settings=settings))
            if dry_run or not reviews:
                return report, None
            await codecs.start()
            stats = await _reenrich(settings, codecs, reviews, model=model,
                                    header=(H_REPROCESS, f"{model}/{prompt_version}".encode()),
                                    on_progress=on_progress)
            return report, stats
        finally:
            await codecs.stop()

    return asyncio.run(go())


# --- replay ----------------------------------------------------------------------------------
@dataclass
class ReplayStats:
    republished: int = 0
    reenriched: int = 0
    failed: int = 0  # llm_exhausted letters whose LLM call failed again (not written)
    undecodable: int = 0  # llm_exhausted letters whose bytes no longer decode


def replay(settings: Settings, letters: Sequence[dict[str, Any]], *,
           on_progress: Callable[[int, int], None] | None = None) -> ReplayStats:
    """Re-publish ``letters`` to their original topics (``llm_exhausted``: re-enrich them)."""
    from confluent_kafka import Producer

    stats = ReplayStats()
    reenrich = [x for x in letters if x["reason"] in REENRICH_REASONS]
    republish = [x for x in letters if x["reason"] not in REENRICH_REASONS]
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer({**kafka_config(settings), "linger.ms": 5})
    for i, letter in enumerate(republish, 1):
        producer.produce(letter["topic"], key=letter["key"], value=letter["value"],
                         headers=replay_headers(letter["headers"]), on_delivery=delivered)
        producer.poll(0)
        stats.republished += 1
        if on_progress is not None and (i % 100 == 0 or i == len(republish)):
            on_progress(i, len(letters))
    producer.flush(KAFKA_TIMEOUT_S)
    if errors:
        raise RuntimeError(f"{len(errors)} dead letters were not re-published: {errors[0]}")
    if reenrich:
        def reenriched(done: int, _total: int) -> None:
            if on_progress is not None:
                on_progress(len(republish) + done, len(letters))

        stats_re = asyncio.run(_replay_reenrich(settings, reenrich, on_progress=reenriched))
        stats.reenriched, stats.failed = stats_re.written, stats_re.failed
        stats.undecodable = len(reenrich) - stats_re.written - stats_re.failed
        if on_progress is not None:
            on_progress(len(letters), len(letters))
    return stats


async def _replay_reenrich(settings: Settings, letters: Sequence[dict[str, Any]], *,
                           on_progress: Callable[[int, int], None] | None = None) -> ReenrichStats:
    from streams.codecs import AvroCodecs

    codecs = AvroCodecs(settings)
    try:
        reviews, _, _ = await _decode_reviews(
            codecs, ((x["value"], to_ms(x["first_failure_at"])) for x in letters))
        await codecs.start()
        count = max((int(h["value"] or 0) for x in letters for h in x["headers"]
                     if h["key"] == H_REPLAY), default=0)
        return await _reenrich(settings, codecs, reviews, model=settings.llm_model,
                               header=(H_REPLAY, str(count + 1).encode()), on_progress=on_progress)
    finally:
        await codecs.stop()
