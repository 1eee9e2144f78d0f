"""The per-review result types of batch enrichment and the heuristic fallback outcome."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agents.llm.heuristic import HEURISTIC_MODEL, HEURISTIC_VERSION, enrich_heuristic
from agents.llm.labels import Enrichment, ReviewInput
from agents.llm.redact import redact_pii


class EnrichStatus(StrEnum):
    ENRICHED = "ENRICHED"
    FALLBACK = "FALLBACK"
    BUDGET_SKIPPED = "BUDGET_SKIPPED"
    TRANSIENT_FAILURE = "TRANSIENT_FAILURE"


@dataclass(frozen=True, slots=True)
class EnrichRequest:
    """One review to enrich; ``ref`` must be unique in the batch (the review or event id)."""

    ref: str
    restaurant_id: str
    text: str
    rating: int
    language: str | None = None
    source: str = ""  # metadata.source as the producer sent it (agents.llm.quotas bounds it)


@dataclass(frozen=True, slots=True)
class EnrichOutcome:
    """What happened to one review. Tokens, cost and latency are this review's share of
    every LLM call it took part in (a split retry adds up); cost shares of a call sum
    exactly to the call's cost."""

    ref: str
    restaurant_id: str
    status: EnrichStatus
    enrichment: Enrichment | None
    model: str
    prompt_version: str
    cache_hit: bool = False
    tokens_in: int = 0
    tokens_out: int = 0
    cost_micro_usd: int = 0
    latency_ms: float = 0.0
    pii_redacted: int = 0
    error: str | None = None
    retry_after_s: float | None = None
    text: str = ""  # the review text with PII redacted, as the LLM saw it (outputs store it)


def fallback_outcome(
    request: EnrichRequest,
    *,
    status: EnrichStatus = EnrichStatus.FALLBACK,
    reason: str | None = None,
    pii_redacted: int = 0,
    text: str | None = None,
) -> EnrichOutcome:
    """A heuristic enrichment for ``request``; the agent calls it when retries run out."""
    review = ReviewInput(request.ref, request.text, request.rating, request.language)
    return EnrichOutcome(
        ref=request.ref,
        restaurant_id=request.restaurant_id,
        status=status,
        enrichment=enrich_heuristic(review),
        model=HEURISTIC_MODEL,
        prompt_version=HEURISTIC_VERSION,
        pii_redacted=pii_redacted,
        error=reason,
        text=redact_pii(request.text).text if text is None else text,
    )
