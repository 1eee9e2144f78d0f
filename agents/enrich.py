"""Stage 2 helpers: the LLM services a worker shares, and the records an enrichment yields.

The batching, cache, budgets, split-and-retry and fallback live in ``agents.llm``; this
module only builds them from Settings and turns outcomes into Avro-ready records.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

from agents.llm.breaker import BreakerState, CircuitBreaker
from agents.llm.budget import TokenBudget
from agents.llm.cache import ResultCache
from agents.llm.client import LLMClient
from agents.llm.outcome import EnrichOutcome, EnrichRequest, EnrichStatus
from streams import metrics
from streams.codecs import to_ms
from streams.logs import event as log_event
from streams.settings import Settings

# httpcore asks ``import sniffio`` on every request (pool acquire, cancellation shields)
# and falls back to asyncio when it is missing. Not installed, each of those imports
# searches sys.path again: ~37 µs apiece, ~4.5% of the worker's CPU at 1k reviews/s
# (py-spy, bench/README.md). A None entry in sys.modules makes the failure immediate
# (~1 µs). Only when sniffio is truly absent: an installed one is left alone.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

BREAKER_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass
class LLMServices:
    """One client, cache, budget and breaker per worker process."""

    client: LLMClient
    cache: ResultCache | None
    budget: TokenBudget
    breaker: CircuitBreaker

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMServices:
        def on_state_change(old: BreakerState, new: BreakerState) -> None:
            metrics.BREAKER_STATE.set(BREAKER_GAUGE[new])
            log_event("breaker_state", old=old.value, new=new.value)

        def on_request(outcome: str, duration_s: float) -> None:
            metrics.LLM_REQUESTS.labels(outcome).inc()
            if outcome != "breaker_open":  # refused before any HTTP request: no duration
                metrics.LLM_DURATION.observe(duration_s)

        def on_retry(outcome: str, delay_s: float) -> None:
            metrics.LLM_RETRIES.inc()

        breaker = CircuitBreaker(
            failure_threshold=settings.breaker_failure_threshold,
            reset_timeout_s=settings.breaker_reset_timeout_s,
            on_state_change=on_state_change,
        )
        client = LLMClient(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key_value(),
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            backoff_base_s=settings.llm_backoff_base_s,
            backoff_max_s=settings.llm_backoff_max_s,
            price_in_usd_per_mtok=settings.llm_price_in_usd_per_mtok,
            price_out_usd_per_mtok=settings.llm_price_out_usd_per_mtok,
            max_concurrency=settings.llm_concurrency,
            breaker=breaker,
            json_schema=settings.llm_json_schema_output,
            on_request=on_request,
            on_retry=on_retry,
        )
        cache = (ResultCache(max_entries=settings.cache_size, max_bytes=settings.cache_max_bytes)
                 if settings.cache_size else None)
        return cls(client=client, cache=cache, breaker=breaker,
                   budget=TokenBudget(tokens_per_minute=settings.token_budget_per_minute))


def enrich_request(review: dict[str, Any]) -> EnrichRequest:
    entity = review["entity"]
    return EnrichRequest(ref=review["event_id"], restaurant_id=entity["restaurant_id"],
                         text=entity["text"], rating=entity["rating"], language=entity["language"])


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
    }


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


def count_outcome(outcome: EnrichOutcome) -> None:
    """Metrics of one final outcome (LLM request metrics are counted by the client hooks)."""
    _enriched_counter(outcome.status).inc()
    if outcome.cache_hit:
        metrics.CACHE_HITS.inc()
    if outcome.tokens_in or outcome.tokens_out:
        _tokens_counter("in").inc(outcome.tokens_in)
        _tokens_counter("out").inc(outcome.tokens_out)
    if outcome.cost_micro_usd:
        metrics.COST.inc(outcome.cost_micro_usd)
