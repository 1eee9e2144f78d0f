"""What an enrichment is asked and what it yields: the request built from a ``ReviewCreated``
record, and the Avro-ready ``ReviewEnriched`` and ``CriticalAlert`` records of an outcome,
with the outcome's metrics.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from agents.llm.outcome import EnrichOutcome, EnrichRequest, EnrichStatus
from streams import metrics
from streams.codecs import to_ms


def enrich_request(review: dict[str, Any]) -> EnrichRequest:
    entity = review["entity"]
    source = (review.get("metadata") or {}).get("source")
    return EnrichRequest(ref=review["event_id"], restaurant_id=entity["restaurant_id"],
                         text=entity["text"], rating=entity["rating"], language=entity["language"],
                         source=source if isinstance(source, str) else "")


# Why a review was BUDGET_SKIPPED, as reviews.enriched says it (the outcome's error text).
BUDGET_REASONS = {
    "source_quota": "source_quota",
    "restaurant daily cost cap reached": "restaurant_daily_cap",
    "global token budget exhausted": "global_token_budget",
}


def enriched_record(review: dict[str, Any], outcome: EnrichOutcome, *, attempts: int,
                    enriched_at_ms: int, received_ms: int | None = None) -> dict[str, Any]:
    """The ``ReviewEnriched`` record; the text is the outcome's, redacted like what the LLM saw.

    ``received_ms`` is the input record's Kafka timestamp: processing lag counts from it (our
    delay), event age from ``occurred_at`` (how late the producer sent it included)."""
    assert outcome.enrichment is not None and outcome.status is not EnrichStatus.TRANSIENT_FAILURE
    entity, enrichment = review["entity"], outcome.enrichment
    occurred_ms = to_ms(review["occurred_at"])
    return {
        "event_id": review["event_id"],
        "review_id": entity["review_id"],
        "restaurant_id": entity["restaurant_id"],
        "order_id": entity["order_id"],
        "user_id": entity["user_id"],
        "rating": entity["rating"],
        "text": outcome.text,
        "language": entity["language"],
        "occurred_at": occurred_ms,
        "enriched_at": enriched_at_ms,
        "sentiment": str(enrichment.label),
        "sentiment_score": float(enrichment.score),
        "categories": list(enrichment.categories),
        "reply_draft": enrichment.reply_draft,
        "status": str(outcome.status),
        "model": outcome.model,
        "prompt_version": outcome.prompt_version,
        "cache_hit": outcome.cache_hit,
        "tokens_in": outcome.tokens_in,
        "tokens_out": outcome.tokens_out,
        "cost_micro_usd": outcome.cost_micro_usd,
        "llm_latency_ms": round(outcome.latency_ms),
        "attempts": attempts,
        "processing_lag_ms": max(0, enriched_at_ms - (received_ms or occurred_ms)),
        "event_age_ms": max(0, enriched_at_ms - occurred_ms),
        "trace_id": review["metadata"]["trace_id"],
        "source": _text_or_none(review["metadata"].get("source")),
        "budget_reason": (BUDGET_REASONS.get(outcome.error or "")
                          if outcome.status is EnrichStatus.BUDGET_SKIPPED else None),
    }


def _text_or_none(value: Any) -> str | None:
    """An internal record's field as Avro's ["null", "string"] takes it (decode validated the
    producer's; a forged internal record must not make the encode fail)."""
    return value if isinstance(value, str) else None


def critical_alert_record(enriched: dict[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": f"critical:{enriched['event_id']}",
        "event_id": enriched["event_id"],
        "review_id": enriched["review_id"],
        "restaurant_id": enriched["restaurant_id"],
        "rating": enriched["rating"],
        "text": enriched["text"],
        "sentiment_score": enriched["sentiment_score"],
        "categories": enriched["categories"],
        "reply_draft": enriched["reply_draft"],
        "status": enriched["status"],
        "occurred_at": enriched["occurred_at"],
        "detected_at": enriched["enriched_at"],
        "trace_id": enriched["trace_id"],
    }


@cache
def _enriched_counter(status: EnrichStatus) -> Any:
    """The labelled child, looked up once per status (``.labels()`` per event is costly)."""
    return metrics.ENRICHED.labels(str(status))


@cache
def _tokens_counter(direction: str) -> Any:
    return metrics.TOKENS.labels(direction)


def count_enrich_outcome(outcome: EnrichOutcome) -> None:
    """Metrics of one final outcome (LLM request metrics are counted by the client hooks)."""
    _enriched_counter(outcome.status).inc()
    if outcome.cache_hit:
        metrics.CACHE_HITS.inc()
    if outcome.tokens_in or outcome.tokens_out:
        _tokens_counter("in").inc(outcome.tokens_in)
        _tokens_counter("out").inc(outcome.tokens_out)
    if outcome.cost_micro_usd:
        metrics.COST.inc(outcome.cost_micro_usd)
