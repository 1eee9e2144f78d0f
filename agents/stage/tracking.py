"""Each review's enrichment state, kept by the stage as its batches move the review on.

A batch enters ``PENDING`` at first sight, ``PROCESSING`` for a scheduled retry, and the
final state when the review's outcome joins (or its record is dead-lettered); the records go
into the ``review-states`` table with the batch's other writes (:mod:`tables.review_states`
says what each state means and why none goes backwards). A call queued or in flight changes
too often to write: :attr:`ReviewTracker.in_flight` keeps it in memory until the batch that
joins the review's outcome has written it, so an answer never reads older than the last one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agents.llm.outcome import EnrichOutcome, EnrichStatus
from agents.stage.batch import PartitionBatch
from agents.stage.jobs import Job
from streams.protocol import ORDER, REVIEW, Item, read_item, review_state_key
from tables.review_states import FINAL, Entered, InFlight, ReviewState, advance

FINAL_OF = {EnrichStatus.ENRICHED: ReviewState.ENRICHED, EnrichStatus.FALLBACK: ReviewState.FALLBACK,
            EnrichStatus.BUDGET_SKIPPED: ReviewState.BUDGET_SKIPPED}


def review_key(item: Item) -> str:
    return review_state_key(item.restaurant_id, str(item.record["entity"]["review_id"]))


def _stored(batch: PartitionBatch, key: str) -> dict[str, Any] | None:
    """The review's record as this batch left it, or as the table holds it."""
    return batch.reviews[key] if key in batch.reviews else batch.tables.review_states.get(key)


class ReviewTracker:
    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._in_flight: dict[str, InFlight] = {}  # event_id -> its call, queued or in flight

    def enter(self, batch: PartitionBatch, item: Item, state: ReviewState, *, at_ms: int,
              **fields: Any) -> None:
        """The review enters ``state`` in this batch (written with it), if that moves it on."""
        if not self.enabled or item.kind == ORDER:
            return
        key = review_key(item)
        record = advance(_stored(batch, key), Entered(
            restaurant_id=item.restaurant_id, review_id=str(item.record["entity"]["review_id"]),
            event_id=item.event_id, trace_id=item.trace_id, state=state, at_ms=at_ms, **fields))
        if record is not None:
            batch.reviews[key] = record

    def is_final(self, batch: PartitionBatch, item: Item) -> bool:
        """Whether this event of the review is in a final state already (as this batch sees it)."""
        if not self.enabled:
            return False
        stored = _stored(batch, review_key(item))
        return bool(stored) and stored.get("event_id") == item.event_id and stored["state"] in FINAL

    def pending(self, batch: PartitionBatch, item: Item, provisional: tuple[str, float, Any] | None, *,
                at_ms: int) -> None:
        label, score = (provisional[0], provisional[1]) if provisional else (None, None)
        self.enter(batch, item, ReviewState.PENDING, at_ms=at_ms, label=label, score=score,
                   provisional=provisional is not None)

    def final(self, batch: PartitionBatch, job: Job, outcome: EnrichOutcome, *, at_ms: int) -> None:
        enrichment = outcome.enrichment
        self.enter(batch, job.item, FINAL_OF[outcome.status], at_ms=at_ms, attempt=job.attempt,
                   label=None if enrichment is None else str(enrichment.label),
                   score=None if enrichment is None else enrichment.score,
                   model=outcome.model, prompt_version=outcome.prompt_version, reason=outcome.error)

    def retried(self, batch: PartitionBatch, job: Job, *, at_ms: int) -> None:
        """Its retry record is sent: attempt + 1 is scheduled (durable, unlike a queued call)."""
        self.enter(batch, job.item, ReviewState.PROCESSING, at_ms=at_ms, attempt=job.attempt + 1,
                   reason=job.retried_for)

    def dead_lettered(self, batch: PartitionBatch, value: bytes | None, reason: str, *, at_ms: int) -> None:
        """A by-restaurant review the stage could not fold; unread records have no state."""
        try:
            item = read_item(value)
        except Exception:
            return
        if item.kind == REVIEW:
            self.enter(batch, item, ReviewState.DEAD_LETTERED, at_ms=at_ms, reason=reason)

    # --- what only memory knows ------------------------------------------------------------------
    def queued(self, jobs: Iterable[Job], *, at_ms: int) -> None:
        if not self.enabled:
            return
        for job in jobs:
            known = self._in_flight.get(job.item.event_id)
            if known is None or job.attempt > known.attempt:
                self._in_flight[job.item.event_id] = InFlight(attempt=job.attempt, since_ms=at_ms)

    def in_flight(self, event_id: str) -> InFlight | None:
        return self._in_flight.get(event_id)

    def written(self, jobs: Iterable[Job]) -> None:
        """The batch that joined these jobs wrote their states: memory no longer needs to say."""
        for job in jobs:
            self._in_flight.pop(job.item.event_id, None)

    def clear(self) -> None:
        self._in_flight.clear()
