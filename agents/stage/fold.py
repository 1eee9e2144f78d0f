"""Fold at first sight: a by-restaurant record read into its pane, once.

A new review counts at once with the local heuristic's *provisional* label and becomes a
:class:`~agents.stage.jobs.Job` for the LLM; an order counts its delivery delay; a late
event counts in the open pane's ``late_events``; a tick moves the watermark.

Replays after a crash: a pane records the highest input offset folded into it and which of
its reviews still owe their enrichment (``PaneAggregate.pending``). A replayed event
already folded is not folded again; a review whose enrichment has not joined is enriched
again. A copy of an ``event_id`` at another offset is a duplicate (the dedupe mark: the
offset where it was first seen). A review back from ``reviews.retry`` is never folded: it
only joins the pane it was folded into, if that pane still owes it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from agents.llm.heuristic import provisional_label
from agents.llm.labels import ReviewInput
from agents.llm.outcome import fallback_outcome
from agents.llm.records import enrich_request
from agents.stage.batch import PartitionBatch
from agents.stage.jobs import Job, OwedReviews
from agents.stage.outputs import Outputs
from agents.stage.tracking import ReviewTracker
from agents.stage.watermarks import Watermarks
from streams import metrics
from streams.logs import event as log_event
from streams.protocol import (
    ORDER,
    RETRY,
    REVIEW,
    TICK,
    Item,
    ProtocolError,
    dedupe_mark,
    kind_of,
    read_item,
    read_tick,
)
from tables.windows import WindowSpec

PANE_FULL_REASON = "pane pending cap reached"


def provisional_of(item: Item) -> tuple[str, float, tuple[str, ...]]:
    """What a review is counted with until its enrichment joins: the local heuristic's."""
    entity = item.record["entity"]
    label, score, categories = provisional_label(
        ReviewInput(item.event_id, entity["text"], entity["rating"], entity.get("language")))
    return str(label), score, categories


@dataclass
class Read:
    """What reading one record produced: reviews to enrich, and sends to await."""

    jobs: list[Job] = field(default_factory=list)
    pending: list[Awaitable[Any]] = field(default_factory=list)


class Folder:
    def __init__(self, *, spec: WindowSpec, watermarks: Watermarks, owed: OwedReviews, outputs: Outputs,
                 tracker: ReviewTracker, pane_pending_cap: int) -> None:
        self.spec, self.watermarks, self.owed, self.outputs = spec, watermarks, owed, outputs
        self.tracker = tracker
        self.pane_pending_cap = pane_pending_cap

    async def read(self, ev: Any, batch: PartitionBatch, *, now_ms: int) -> Read:
        """Fold one record of the batch; raises :class:`ProtocolError` for a malformed one.
        A review it makes a job for is owed from here on (``PartitionBatch.owing``)."""
        read = await self._read(ev, batch, now_ms=now_ms)
        batch.owing.update(job.item.event_id for job in read.jobs)
        return read

    async def _read(self, ev: Any, batch: PartitionBatch, *, now_ms: int) -> Read:
        message = ev.message
        partition, offset = message.partition, message.offset
        if kind_of(message.value) == TICK:
            self.watermarks.on_tick(partition, read_tick(message.value), now_ms=now_ms)
            return Read()
        item = read_item(message.value)
        if item.kind == RETRY:
            return self._returned(ev, batch, item)
        state, restaurant_id, event_id = batch.state, item.restaurant_id, item.event_id
        occurred_ms = item.occurred_ms
        # A replay after a crash is recognised in the pane it went to: its own pane, or (if it
        # was late then) the open pane it was counted late in. Its window may have closed
        # since, so the own pane is asked first, whatever lateness says now.
        own = self.spec.pane_of(occurred_ms)
        pane_start, late = state.target_pane(restaurant_id, occurred_ms,
                                             watermark_ms=self.watermarks.of(partition))
        for start, was_late in ((own, False), (pane_start, late)):
            pane = state.pane(restaurant_id, start)
            if pane.seen(offset):
                # Its enrichment is owed: resumed here, unless this worker has it under way
                # already (a seek back over offsets it handled brings the record again), or
                # this is a copy at another offset, skipped as a duplicate when first read (a
                # pane's offset says "this offset and every one before": the original and its
                # copy replayed in one batch were enriched twice, seen in test_crash_enrichment).
                if (item.kind == REVIEW and pane.owes(event_id) and event_id not in self.owed
                        and event_id not in batch.owing and batch.mark_of(event_id) in (None, offset)):
                    return Read(jobs=[Job(ev, partition, item, start, was_late)])
                return Read()
        mark = batch.mark_of(event_id)
        if mark is not None and mark != offset:
            metrics.DUPLICATES.inc()
            metrics.input_outcome(item.origin.topic, "duplicate")
            log_event("duplicate", level=10, event_id=event_id, restaurant=restaurant_id)
            return Read()
        return await self._first_sight(ev, batch, item, pane_start, late, now_ms=now_ms)

    def _returned(self, ev: Any, batch: PartitionBatch, item: Item) -> Read:
        """A review back from reviews.retry: enriched again if its pane still owes it."""
        state, restaurant_id = batch.state, item.restaurant_id
        if item.pane_start_ms is None:
            raise ProtocolError("retry record without its pane")
        metrics.input_outcome(item.origin.topic, "retry_returned")
        if item.event_id in self.owed or item.event_id in batch.owing or (
                state.has_pane(restaurant_id, item.pane_start_ms)
                and not state.pane(restaurant_id, item.pane_start_ms).owes(item.event_id)):
            # Another copy is being enriched (or is, from this batch on), or its enrichment
            # joined already. Two copies in one batch (a replay after a restart reads the
            # attempt 2 and 3 records of a review together) were both enriched and both sent.
            metrics.DUPLICATES.inc()
            metrics.input_outcome(item.origin.topic, "duplicate")
            return Read()
        return Read(jobs=[Job(ev, ev.message.partition, item, item.pane_start_ms, item.late, item.attempt)])

    async def _first_sight(self, ev: Any, batch: PartitionBatch, item: Item, pane_start: int, late: bool,
                           *, now_ms: int) -> Read:
        state, restaurant_id, event_id = batch.state, item.restaurant_id, item.event_id
        partition, offset, occurred_ms = ev.message.partition, ev.message.offset, item.occurred_ms
        read = Read()
        # Computed and sent before any state changes (either may raise). A pane owing its cap
        # of reviews (a flood on one restaurant under a slow LLM) folds the next one as final:
        # the heuristic at once, its output acknowledged before the batch's state is written,
        # so a replay that finds it folded owes it nothing.
        provisional = outcome = None
        settled = item.kind == REVIEW and state.pane(restaurant_id, pane_start).pending_full(
            self.pane_pending_cap)
        if settled:
            outcome = fallback_outcome(enrich_request(item.record), reason=PANE_FULL_REASON)
            read.pending += await self.outputs.enriched(Job(ev, partition, item, pane_start, late), outcome,
                                                        now_ms=now_ms)
            metrics.ENRICH_SHED.inc()
            metrics.input_outcome(item.origin.topic, "enriched")
        elif item.kind == REVIEW and not late:
            provisional = provisional_of(item)
        if settled:
            self.tracker.final(batch, Job(ev, partition, item, pane_start, late), outcome, at_ms=now_ms)
        elif item.kind == REVIEW:  # a late one is counted late, but its state shows the heuristic's label
            self.tracker.pending(batch, item, provisional or provisional_of(item), at_ms=now_ms)
        batch.marks[event_id] = dedupe_mark(offset)
        batch.due.add(restaurant_id)
        pane = state.touch(restaurant_id, pane_start)
        lag_ms = max(0, now_ms - (item.origin.timestamp_ms or occurred_ms))
        age_ms = max(0, now_ms - occurred_ms)
        if late:
            metrics.LATE_EVENTS.inc()
            if item.kind == REVIEW and not settled:
                pane.add_late(review_id=event_id)
                read.jobs.append(Job(ev, partition, item, pane_start, True))
            else:
                pane.add_late()
                if item.kind == ORDER:
                    metrics.input_outcome(item.origin.topic, "folded")
        elif item.kind == ORDER:
            record = item.record
            pane.add_order(delay_ms=int(record["delivered_at"]) - int(record["promised_at"]))
            metrics.input_outcome(item.origin.topic, "folded")
        elif outcome is not None:
            enrichment = outcome.enrichment
            assert enrichment is not None
            pane.add_first_sight(event_id=event_id, rating=item.record["entity"]["rating"],
                                 label=str(enrichment.label), score=enrichment.score,
                                 categories=enrichment.categories, final_status=str(outcome.status),
                                 processing_lag_ms=lag_ms, event_age_ms=age_ms)
        else:
            assert provisional is not None
            label, score, categories = provisional
            pane.add_first_sight(event_id=event_id, rating=item.record["entity"]["rating"], label=label,
                                 score=score, categories=categories, processing_lag_ms=lag_ms,
                                 event_age_ms=age_ms)
            read.jobs.append(Job(ev, partition, item, pane_start, False, provisional=provisional))
        pane.mark_applied(offset)
        return read
