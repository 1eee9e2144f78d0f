"""Answered enrichments wait here for the next batch, which joins them into their panes.

Joins wait for a batch (or the idle joiner) instead of writing on their own: a pane and a
day's cost entry are then written once per batch, not once per LLM call. A join replaces
the review's provisional label by the final one, once: the pane says whether the review
still owes it (:attr:`tables.values.PaneAggregate.pending`), so a replay or a second retry
copy that joined before finds nothing to change.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from agents.llm.outcome import EnrichOutcome
from agents.stage.batch import PartitionBatch, States
from agents.stage.completion import Final
from agents.stage.costs import Costs
from agents.stage.fold import provisional_of
from agents.stage.jobs import Job, OwedReviews
from agents.stage.ports import Ports
from agents.stage.tracking import ReviewTracker
from streams import metrics
from tables.panes import TUMBLING_CLOSED
from tables.windows import WindowSpec


@dataclass
class Joined:
    """What joining the answered reviews produced: the jobs to ack once the batch is durable
    (of the generation they were kept for), and budget alerts as (partition, record)."""

    jobs: list[Job] = field(default_factory=list)
    alerts: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    generation: int = 0
    sends: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # kept by exactly-once


class Joins:
    def __init__(self, *, spec: WindowSpec, ports: Ports, states: States, costs: Costs,
                 owed: OwedReviews, tracker: ReviewTracker) -> None:
        self.spec, self.ports, self.states, self.costs, self.owed = spec, ports, states, costs, owed
        self.tracker = tracker
        # (answered, what joins, the sends kept for the joining batch under exactly-once), in order
        self._ready: list[tuple[list[Job], list[Final], list[tuple[Any, str, dict[str, Any]]]]] = []
        self.waiting = asyncio.Event()  # set while answers wait for their join

    def __bool__(self) -> bool:
        return bool(self._ready)

    def queue(self, answered: list[Job], final: list[Final],
              sends: list[tuple[Any, str, dict[str, Any]]] | None = None) -> None:
        self._ready.append((answered, final, sends or []))
        self.waiting.set()

    def drop(self) -> list[Job]:
        """Every answered job not yet joined (a rebalance gives them up)."""
        jobs = [job for answered, _, _ in self._ready for job in answered]
        self._ready.clear()
        return jobs

    def join_into(self, batches: dict[int, PartitionBatch], *, generation: int, now_ms: int) -> Joined:
        """Join every answered enrichment into its pane, opening the batch of a partition the
        batch has no event of. Only jobs of ``generation`` join; the rest are dropped."""
        joined = Joined(generation=generation)

        def batch_of(job: Job) -> PartitionBatch:
            batch = batches.get(job.partition)
            if batch is None:
                batch = batches[job.partition] = self.states.open(
                    job.partition, self.ports.tables_for(job.partition, job.event))
            return batch

        for answered, final, sends in self._ready:
            joined.jobs += [job for job in answered if job.generation == generation]
            stale: set[int] = set()  # jobs whose review another job joined first
            for job in answered:
                self.owed.release(job, generation=generation)
                if job.retried_for is not None and job.generation == generation:
                    self.tracker.retried(batch_of(job), job, at_ms=now_ms)
            for job, outcome in final:
                if job.generation != generation:
                    continue
                batch = batch_of(job)
                answered_before = self.tracker.is_final(batch, job.item)  # its records went out then
                if not self._join(batch, job, outcome) or answered_before:
                    stale.add(id(job))
                self.tracker.final(batch, job, outcome, at_ms=now_ms)
                for alert in self.costs.book(batch, job, outcome, now_ms=now_ms):
                    joined.alerts.append((job.partition, alert))
            if answered and answered[0].generation == generation:  # one generation per completion
                # Exactly-once: a review's records go out with its join, once.
                joined.sends += [(topic, kwargs) for job, topic, kwargs in sends if id(job) not in stale]
        self._ready.clear()
        self.waiting.clear()
        return joined

    def _join(self, batch: PartitionBatch, job: Job, outcome: EnrichOutcome) -> bool:
        """Join the final label into the review's pane; False when another job of the review
        joined it first (the pane no longer owes it)."""
        state, item = batch.state, job.item
        restaurant_id, event_id = item.restaurant_id, item.event_id
        closed_end = state.closure(restaurant_id)[TUMBLING_CLOSED]
        window_end = self.spec.tumbling_of(item.occurred_ms)[1]
        if job.late or (closed_end is not None and window_end <= closed_end):
            metrics.ENRICHED_AFTER_CLOSE.inc()
        if not state.has_pane(restaurant_id, job.pane_start_ms):
            return True  # collected: every window holding it is final (its answer still goes out)
        if not state.pane(restaurant_id, job.pane_start_ms).owes(event_id):
            return False  # joined before (a replay, a second retry copy)
        provisional = job.provisional
        if provisional is None and not job.late:  # a replay or a retry copy: the heuristic is deterministic
            provisional = provisional_of(item)
        enrichment = outcome.enrichment
        assert enrichment is not None
        state.touch(restaurant_id, job.pane_start_ms).join(
            event_id=event_id, provisional=provisional,
            label=str(enrichment.label), score=enrichment.score, categories=enrichment.categories,
            status=str(outcome.status), cache_hit=outcome.cache_hit, tokens_in=outcome.tokens_in,
            tokens_out=outcome.tokens_out, cost_micro_usd=outcome.cost_micro_usd)
        return True
