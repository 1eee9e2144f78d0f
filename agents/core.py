"""The restaurant stage's core: dedupe, fold at first sight, close windows, join enrichment.

No Faust and no Kafka here: the core receives its collaborators (:class:`Ports`: tables as
mappings, senders as callables, a clock), so unit tests drive it with dicts and fakes.

The LLM is beside the flow, never in front of it (DESIGN §3):

1. :meth:`StageCore.process` handles one batch of the by-restaurant topic. A new review or
   order is folded into its pane at once, the review with the local heuristic's
   *provisional* label; due windows close and their final aggregates go out; the batch's
   tables are written once its outputs are acknowledged, and made durable behind it (the
   next batch does not wait; batches publish in order). Every event is acked once that is
   done, except the reviews, which go to the :class:`~agents.enrichment.Enricher`.
2. :meth:`StageCore.complete` runs when an enrichment call answers: it sends the review's
   ``reviews.enriched`` (and critical alert), or its retry record, or its dead letter; then
   joins the final label into the review's pane (replacing the provisional one) and books
   the cost; only then acks the review. So a review's input offset is committed only once
   its outcome is durable: Faust commits a partition up to its first unacked offset, the
   incomplete-offset tracking of Confluent's Parallel Consumer. At most
   ``enrich_max_unjoined`` answers are sent and not yet durably joined (what a crash
   enriches again): past it, completions wait.

A window that closes before a review's answer arrives reports it in
``provisional_labels``; the answer still goes out on ``reviews.enriched`` and may join a
pane that later hopping windows use, but never changes an aggregate already sent.

Replays after a crash: a pane records the highest input offset folded into it and which
of its reviews still owe their enrichment (``PaneAggregate.pending``). A replayed event
already folded is not folded again; a review whose enrichment has not joined is enriched
again. A copy of an ``event_id`` at another offset is a duplicate (the dedupe table: one
mark per event, a batch's marks written together). A review coming back from
``reviews.retry`` is never folded: it only joins the pane it was folded into, and only if
that pane still owes it.

Both paths change state under one lock: a batch and a join never interleave their
read-modify-write of a pane, and a join never writes a batch's state before the batch's
outputs are acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.enrich import count_outcome, critical_alert_record, enrich_request, enriched_record
from agents.enrichment import Enricher
from agents.llm.heuristic import provisional_label
from agents.llm.labels import ReviewInput
from agents.llm.outcome import EnrichOutcome, EnrichStatus, fallback_outcome
from agents.outbox import Outbox
from streams import metrics
from streams.clean_stop import stop_now
from streams.logs import event as log_event
from streams.protocol import (
    H_ID,
    H_TRACE,
    ORDER,
    RETRY,
    REVIEW,
    TICK,
    Item,
    Origin,
    ProtocolError,
    Tick,
    checkpoint_key,
    day_key,
    dedupe_mark,
    kind_of,
    read_dedupe_mark,
    read_item,
    read_tick,
    write_item,
)
from streams.settings import FailurePolicy, Settings
from tables.panes import Closed, DueIndex, PartitionCache, PartitionState
from tables.rules import RuleThresholds, budget_exceeded_record
from tables.state import PartitionTables
from tables.values import pane_pending_cap
from tables.windows import DAY_MS, WindowSpec, utc_day

BUDGET_CAP_REASON = "restaurant daily cost cap reached"
BACKLOG_REASON = "enrichment backlog full"
PANE_FULL_REASON = "pane pending cap reached"
JOIN_IDLE_S = 0.2  # longest an answered review waits for its join when no batch comes
STOP_PUBLISH_S = 10.0  # at stop, the longest we wait for the last batches' changelog records

Send = Callable[..., Awaitable[Awaitable[Any]]]  # (topic, *, key, value, partition, headers)


def enrich_attempts(settings: Settings) -> int:
    """How many times a worker tries one review's enrichment call (and emission) before it
    gives the heuristic and a dead letter: as many as reviews.retry redelivers it under
    retry_then_fallback, once under fallback_now (issue 30, finding 7)."""
    if settings.llm_failure_policy is FailurePolicy.RETRY_THEN_FALLBACK:
        return settings.llm_max_attempts
    return 1


async def _nothing_to_publish(written: Sequence[PartitionTables]) -> Sequence[Awaitable[Any]]:
    return ()


@dataclass
class Ports:
    """What the core needs from the world; the worker wires Faust, tests wire fakes."""

    tables_for: Callable[[int, Any], PartitionTables]  # (partition, an event of it) -> tables
    send: Send  # returns the delivery future; await it for the acknowledgement
    dead_letter: Callable[..., Awaitable[Awaitable[Any]]]  # (origin, *, stage, reason, ...)
    encode: Callable[[str, dict[str, Any]], bytes]
    ack: Callable[[Any], Awaitable[Any]]  # the event's offset may be committed now
    flush_producer: Callable[[], Awaitable[None]]
    # Sends the changelog records of the tables a batch wrote (the worker's tables hold them
    # until then: streams.faust_internals point 7) and returns their deliveries; dicts have none.
    publish_tables: Callable[[Sequence[PartitionTables]], Awaitable[Sequence[Awaitable[Any]]]] = (
        _nothing_to_publish)
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    # What the web view remembers of recent activity (a critical review, an alert as sent).
    remember_critical: Callable[[dict[str, Any]], None] = lambda record: None
    remember_alert: Callable[[dict[str, Any]], None] = lambda record: None


@dataclass(frozen=True)
class OutputTopics:
    enriched: str
    critical_alert: str
    aggregates: str
    restaurant_alerts: str
    retry: str


@dataclass(slots=True)
class Job:
    """A review whose final enrichment is owed: the event to ack and the pane to join."""

    event: Any
    partition: int
    item: Item
    pane_start_ms: int
    late: bool
    attempt: int = 1
    provisional: tuple[str, float, tuple[str, ...]] | None = None  # what the fold counted, if known
    generation: int = 0  # StageCore.generation when submitted; an older one was abandoned
    owed: bool = False  # counted in StageCore._owed: its enrichment is queued, in flight or unjoined
    failures: int = 0  # this worker's failed tries at enriching or emitting it (agents.enrichment)
    given_up: str | None = None  # why its tries were spent: it is emitted as FALLBACK + dead letter


@dataclass
class _Batch:
    """What one batch of one partition produced."""

    state: PartitionState
    tables: PartitionTables
    due: set[str] = field(default_factory=set)
    marks: dict[str, Any] = field(default_factory=dict)  # event_id -> dedupe mark to write
    daily: dict[str, dict[str, Any]] = field(default_factory=dict)  # day key -> entry to write


class StageCore:
    def __init__(self, *, ports: Ports, topics: OutputTopics, settings: Settings, outbox: Outbox,
                 enrich: Callable[[Sequence[Job], dict[str, int]], Awaitable[list[EnrichOutcome]]],
                 # (jobs, today's spend ledger to reserve estimates in) -> one outcome per job
                 ) -> None:
        self.ports = ports
        self.topics = topics
        self.settings = settings
        self.spec = WindowSpec.from_settings(settings)
        self.thresholds = RuleThresholds.from_settings(settings)
        self.outbox = outbox
        self._enrich_fn = enrich
        self.enricher = Enricher(enrich=self._enrich, complete=self.complete, give_up=self._give_up,
                                 batch_size=settings.llm_batch_size,
                                 concurrency=settings.llm_concurrency,
                                 max_pending=settings.enrich_max_pending,
                                 max_attempts=enrich_attempts(settings),
                                 linger_s=settings.llm_batch_linger_ms / 1000)
        self.lock = asyncio.Lock()
        # The last batch's publication (marks durable, then its changelog records sent, then
        # its events acked), each chained after the one before: see _publish.
        self._publishing: asyncio.Future[None] | None = None
        self._publish_error: BaseException | None = None
        # Answered enrichments (outputs acknowledged) waiting to join their panes.
        self._ready: list[tuple[list[Job], list[tuple[Job, EnrichOutcome]]]] = []
        self._ready_event = asyncio.Event()
        self.generation = 0
        # event id -> jobs of it submitted and not yet joined (or handed on as a retry record):
        # a retry copy arriving meanwhile is a duplicate, not a second enrichment.
        self._owed: dict[str, int] = {}
        self._joiner_task: asyncio.Task[None] | None = None
        self.stop_worker: Callable[[str], None] = stop_now  # a test replaces it
        # Told of each endless task (streams.health.Health.watch): its end is the worker's death.
        self.watch: Callable[[asyncio.Task[Any]], None] = lambda task: None
        # Reviews whose outputs are sent (or being sent) and whose join is not yet durable:
        # what a kill -9 enriches again. Completions wait while it is at the limit.
        self.unjoined = 0
        self._room = asyncio.Event()
        # Today's spend per restaurant as this process reserved it: estimates of the calls
        # in flight included, so concurrent calls never spend the same headroom twice.
        self._ledger: dict[str, int] = {}
        self._ledger_day = 0
        # by-restaurant partition -> input partition ("topic:p") -> (mark, sent_at) of its newest tick
        self.input_marks: dict[int, dict[str, tuple[int, int]]] = {}
        self._input_partitions: dict[int, dict[str, int]] = {}  # input topic -> partitions
        self._watermarks: dict[int, int] = {}
        self._due: dict[int, DueIndex] = {}  # rebuilt from the partition's index when missing
        self._caches: dict[int, PartitionCache] = {}  # what the last batch of each partition wrote
        self.retention_ms = int(settings.state_retention_s * 1000)
        self.tick_skew_ms = int(settings.event_time_max_skew_s * 1000)
        self.pane_pending_cap = pane_pending_cap(max_pending=settings.pane_max_pending,
                                                 id_max_chars=settings.id_max_chars)

    # --- watermark ---------------------------------------------------------------------------
    def watermark(self, partition: int) -> int:
        """Closing and lateness follow the input watermark the ticks carry, never one event."""
        return self._watermarks.get(partition, 0)

    def _on_tick(self, partition: int, tick: Tick, *, now_ms: int) -> None:
        """Keep the newest mark of every input partition; the watermark is their minimum.

        A mark is capped at this worker's clock plus the allowed skew: a forged or
        clock-skewed tick cannot close windows ahead of time by more than that.
        """
        marks = self.input_marks.setdefault(partition, {})
        for tp, mark in tick.marks.items():
            previous = marks.get(tp)
            if previous is None or tick.sent_at_ms >= previous[1]:
                marks[tp] = (min(mark, now_ms + self.tick_skew_ms), tick.sent_at_ms)
        counts = self._input_partitions.setdefault(partition, {})
        counts.update(tick.partitions)
        if any(f"{topic}:{p}" not in marks for topic, n in counts.items() for p in range(n)):
            return  # some input partition has no mark yet: nobody has read it
        self._watermarks[partition] = max(self.watermark(partition), min(m for m, _ in marks.values()))

    def reset_due(self) -> None:
        """After a rebalance: rebuild each partition's due index from its table index, and
        read its records from the tables again (they were restored, maybe by another owner)."""
        self._due.clear()
        self._caches.clear()

    # --- 1. a batch of the by-restaurant topic ---------------------------------------------
    async def process(self, events: Sequence[Any]) -> None:
        if self._publish_error is not None:  # an earlier batch's publication failed: say so, once
            error, self._publish_error = self._publish_error, None
            raise error
        groups: dict[int, list[Any]] = {}
        for ev in events:
            groups.setdefault(ev.message.partition, []).append(ev)
        jobs: list[Job] = []
        async with self.lock:
            try:
                await self._batch(groups, jobs)
            except BaseException:
                for cache in self._caches.values():  # records it changed in memory were not written
                    cache.clear()
                raise
        self._submit(jobs)

    async def _batch(self, groups: dict[int, list[Any]], jobs: list[Job]) -> None:
        """One batch under the lock: read, join, close, send, then write the local stores.

        Making that state durable is chained behind the batch (:meth:`_publish`), so the next
        batch starts without waiting for the broker. What it wrote to the tables is published
        even when it fails half-way, so the changelogs never fall behind the local stores
        (Faust sent each write as it happened); its events are then not acked.
        """
        batches: dict[int, _Batch] = {}
        acks: list[Any] = []
        joined: list[Job] = []
        try:
            await self._run_batch(groups, jobs, batches, joined)
            owed = {id(job.event) for job in jobs}
            acks = [ev for evs in groups.values() for ev in evs if id(ev) not in owed]
            acks += [job.event for job in joined]  # their outcome was sent, and joined here
        finally:
            # Joined jobs share the generation _join_ready kept them for.
            generation = joined[0].generation if joined else self.generation
            self._publish([batch.tables for batch in batches.values()],
                          marked=any(batch.marks for batch in batches.values()), acks=acks,
                          joined=(generation, len(joined)))

    def _publish(self, written: list[PartitionTables], *, marked: bool, acks: list[Any],
                 joined: tuple[int, int] = (0, 0)) -> None:
        """Make a batch's state durable after the previous batch's, then ack its events.

        In order: the dedupe marks are made durable before the panes (a pane that survived
        a crash without its events' marks would count a copy decode re-forwards, at a new
        offset, a second time); the changelog records follow those of the batch before (the
        last record of a key is its state on restore); an event is acked only once its
        batch's records are sent (Faust flushes the producer before it commits). None of it
        holds the lock or the next batch: the marks' flush is a produce round trip, about
        half of a batch's time when it was awaited inside it (README, Benchmarks).

        ``joined`` is (generation, count) of the answered reviews this batch joined: once its
        records are acknowledged, their joins are durable and they leave :attr:`unjoined`
        (the chain does not wait for that: a round trip per batch showed in b's latency).
        """
        if not (written or acks):  # marks are written only by a batch with tables
            self._joined_durably(*joined)
            return
        previous = self._publishing
        self._publishing = task = asyncio.ensure_future(
            self._published(previous, written, marked=marked, acks=acks, joined=joined))
        task.add_done_callback(self._on_published)

    async def _published(self, previous: asyncio.Future[None] | None, written: list[PartitionTables], *,
                         marked: bool, acks: list[Any], joined: tuple[int, int] = (0, 0)) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its outcome is its own: reported by _on_published
        deliveries: Sequence[Awaitable[Any]] = ()
        try:
            try:
                if marked:
                    await self.ports.flush_producer()
            finally:
                deliveries = await self.ports.publish_tables(written)
            for ev in acks:
                await self.ports.ack(ev)
        finally:
            self._joined_when_delivered(joined, deliveries)

    def _joined_when_delivered(self, joined: tuple[int, int], deliveries: Sequence[Awaitable[Any]]) -> None:
        # A record that failed is logged where it failed; its joins leave the count anyway,
        # or a broker error would stop enrichment for good.
        if joined[1]:
            delivered = asyncio.gather(*deliveries, return_exceptions=True)
            delivered.add_done_callback(lambda _: self._joined_durably(*joined))

    async def _room_for(self, n: int) -> None:
        """Wait until ``n`` more answered reviews fit under ``enrich_max_unjoined``.

        Each answer sent and not yet durably joined is a review a kill -9 enriches twice
        (its offset replays, its pane still owes it). Joins become durable at batch pace,
        so without this bound a burst of fast answers (a backlog after a restart, an LLM
        at 5 ms) left hundreds in that state: 0-260 repeats in test_crash_enrichment.
        """
        limit = self.settings.enrich_max_unjoined
        while self.unjoined and self.unjoined + n > limit:
            self._room.clear()
            await self._room.wait()

    def _joined_durably(self, generation: int, n: int) -> None:
        if n and generation == self.generation:  # abandon() has reset an older generation's count
            self.unjoined -= n
            metrics.ENRICH_UNJOINED.set(self.unjoined)
            self._room.set()

    def _on_published(self, task: asyncio.Future[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log_event("publish_failed", level=40, error=repr(task.exception()))
        self._publish_error = task.exception()

    async def published(self) -> None:
        """Wait until every batch so far is durable and its events acked (or failed)."""
        while self._publishing is not None and not self._publishing.done():
            await asyncio.wait([self._publishing])

    async def _run_batch(self, groups: dict[int, list[Any]], jobs: list[Job],
                         batches: dict[int, _Batch], joined: list[Job]) -> None:
        """Fills ``joined`` with the answered jobs it joined (to ack once the batch is durable)."""
        now_ms = self.ports.clock_ms()
        pending: list[Awaitable[Any]] = []
        closed = Closed()
        for partition, evs in groups.items():
            tables = self.ports.tables_for(partition, evs[-1])
            batch = batches[partition] = _Batch(state=self._state(partition, tables), tables=tables)
            for ev in evs:
                try:
                    await self._read(ev, batch, now_ms=now_ms, jobs=jobs, pending=pending)
                except ProtocolError as exc:
                    pending.append(await self.ports.dead_letter(
                        Origin.of(ev.message), stage="restaurant", reason=exc.reason, error=exc))
                    metrics.input_outcome(ev.message.topic, "dead_lettered")
                except Exception as exc:  # a record's failure is that record's dead letter
                    log_event("record_failed", level=40, stage="restaurant", error=repr(exc))
                    pending.append(await self.ports.dead_letter(
                        Origin.of(ev.message), stage="restaurant", reason="processing_error", error=exc))
                    metrics.input_outcome(ev.message.topic, "dead_lettered")
        joined += self._join_ready(batches, now_ms=now_ms, closed=closed)
        for partition, batch in batches.items():
            if partition not in self.outbox.recovered:
                await self.outbox.recover(partition, batch.tables.closures.get(checkpoint_key(partition)))
            self._close_due(partition, batch, now_ms=now_ms, closed=closed)
        sent = await self._send_final(closed.aggregates, closed.alerts)
        await asyncio.gather(*pending, *(future for _, _, future in sent))
        self._acknowledged(sent)
        # Outputs are acknowledged: now the state may say "applied". The marks are sent first;
        # _publish makes them durable before the panes' changelog records go out.
        for batch in batches.values():
            if batch.marks:  # in the worker, one changelog record (streams.faust_internals point 6)
                batch.tables.dedupe.update(batch.marks)
        for partition, batch in batches.items():
            batch.tables.daily_cost.update(batch.daily)
            self._flush(partition, batch.state, batch.tables, closed)
            self._caches[partition].trim()

    async def _read(self, ev: Any, batch: _Batch, *, now_ms: int, jobs: list[Job],
                    pending: list[Awaitable[Any]]) -> None:
        message = ev.message
        partition, offset = message.partition, message.offset
        if kind_of(message.value) == TICK:
            self._on_tick(partition, read_tick(message.value), now_ms=now_ms)
            return
        item = read_item(message.value)
        state, restaurant_id, event_id = batch.state, item.restaurant_id, item.event_id
        if item.kind == RETRY:
            if item.pane_start_ms is None:
                raise ProtocolError("retry record without its pane")
            metrics.input_outcome(item.origin.topic, "retry_returned")
            if self._owed.get(event_id) or (
                    state.has_pane(restaurant_id, item.pane_start_ms)
                    and not state.pane(restaurant_id, item.pane_start_ms).owes(event_id)):
                # Another copy is being enriched, or its enrichment joined already.
                metrics.DUPLICATES.inc()
                metrics.input_outcome(item.origin.topic, "duplicate")
                return
            jobs.append(Job(ev, partition, item, item.pane_start_ms, item.late, item.attempt))
            return
        occurred_ms = item.occurred_ms
        # A replay after a crash is recognised in the pane it went to: its own pane, or (if it
        # was late then) the open pane it was counted late in. Its window may have closed
        # since, so the own pane is asked first, whatever lateness says now.
        own = self.spec.pane_of(occurred_ms)
        watermark = self.watermark(partition)
        pane_start, late = state.target_pane(restaurant_id, occurred_ms, watermark_ms=watermark)
        for start, was_late in ((own, False), (pane_start, late)):
            pane = state.pane(restaurant_id, start)
            if pane.seen(offset):
                # Its enrichment is owed: resumed here, unless this worker has it under way
                # already (a seek back over offsets it handled brings the record again), or
                # this is a copy at another offset, skipped as a duplicate when first read (a
                # pane's offset says "this offset and every one before": the original and its
                # copy replayed in one batch were enriched twice, seen in test_crash_enrichment).
                if (item.kind == REVIEW and pane.owes(event_id) and not self._owed.get(event_id)
                        and self._mark(batch, event_id) in (None, offset)):
                    jobs.append(Job(ev, partition, item, start, was_late))
                return
        mark = self._mark(batch, event_id)
        if mark is not None and mark != offset:
            metrics.DUPLICATES.inc()
            metrics.input_outcome(item.origin.topic, "duplicate")
            log_event("duplicate", level=10, event_id=event_id, restaurant=restaurant_id)
            return
        # Computed and sent before any state changes (either may raise). A pane owing its cap
        # of reviews (a flood on one restaurant under a slow LLM) folds the next one as final:
        # the heuristic at once, its output acknowledged before the batch's state is written,
        # so a replay that finds it folded owes it nothing.
        provisional = outcome = None
        settled = item.kind == REVIEW and state.pane(restaurant_id, pane_start).pending_full(
            self.pane_pending_cap)
        if settled:
            outcome = fallback_outcome(enrich_request(item.record), reason=PANE_FULL_REASON)
            pending += await self._send_enriched(Job(ev, partition, item, pane_start, late), outcome,
                                                 now_ms=now_ms)
            metrics.ENRICH_SHED.inc()
            metrics.input_outcome(item.origin.topic, "enriched")
        elif item.kind == REVIEW and not late:
            provisional = self._provisional(item)
        batch.marks[event_id] = dedupe_mark(offset)
        batch.due.add(restaurant_id)
        pane = state.touch(restaurant_id, pane_start)
        if late:
            metrics.LATE_EVENTS.inc()
            if item.kind == REVIEW and not settled:
                pane.add_late(review_id=event_id)
                jobs.append(Job(ev, partition, item, pane_start, True))
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
                                 processing_lag_ms=max(0, now_ms - (item.origin.timestamp_ms or occurred_ms)),
                                 event_age_ms=max(0, now_ms - occurred_ms))
        else:
            assert provisional is not None
            label, score, categories = provisional
            pane.add_first_sight(event_id=event_id, rating=item.record["entity"]["rating"], label=label,
                                 score=score, categories=categories,
                                 processing_lag_ms=max(0, now_ms - (item.origin.timestamp_ms or occurred_ms)),
                                 event_age_ms=max(0, now_ms - occurred_ms))
            jobs.append(Job(ev, partition, item, pane_start, False, provisional=provisional))
        pane.mark_applied(offset)

    def _close_due(self, partition: int, batch: _Batch, *, now_ms: int, closed: Closed) -> None:
        """Close (or retire) the restaurants this batch touched and those whose time has come."""
        state, watermark = batch.state, self.watermark(partition)
        due = self._due.get(partition)
        if due is None:  # first batch since start or rebalance: everything indexed, once
            due = self._due[partition] = DueIndex()
            for restaurant_id in state.index():
                due.set(restaurant_id, 0)
        for restaurant_id in sorted(batch.due | set(due.pop_due(watermark))):
            state.close(restaurant_id, watermark_ms=watermark, now_ms=now_ms,
                        thresholds=self.thresholds, out=closed)
            days = state.retire(restaurant_id, watermark_ms=watermark)
            if days is not None:
                for day in days:
                    batch.tables.daily_cost.pop(day_key(restaurant_id, day), None)
                batch.tables.latest.pop(restaurant_id, None)
                closed.latest.get(partition, {}).pop(restaurant_id, None)
            due.set(restaurant_id, state.next_due_ms(restaurant_id))

    def _submit(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        for job in jobs:
            job.generation = self.generation
            job.owed = True
            self._owed[job.item.event_id] = self._owed.get(job.item.event_id, 0) + 1
        refused = self.enricher.submit(jobs)
        if refused:  # a full backlog: the heuristic now, the flow goes on
            metrics.ENRICH_SHED.inc(len(refused))
            outcomes = [fallback_outcome(enrich_request(j.item.record), reason=BACKLOG_REASON)
                        for j in refused]
            task = asyncio.ensure_future(self.complete(refused, outcomes))
            task.add_done_callback(_log_failure)

    async def _enrich(self, jobs: Sequence[Job]) -> list[EnrichOutcome]:
        """Today's spend of the jobs' restaurants, then one enrichment call."""
        now_ms = self.ports.clock_ms()
        day = utc_day(now_ms)[0]
        if day != self._ledger_day:
            self._ledger, self._ledger_day = {}, day
        cap = self.settings.restaurant_daily_cost_cap_micro_usd
        for rid, job in {job.item.restaurant_id: job for job in jobs}.items():
            entry = self.ports.tables_for(job.partition, job.event).daily_cost.get(day_key(rid, day)) or {}
            # Once the cap fired, the rest of the day is heuristic (estimates are above
            # actual costs, so the spend alone could let reviews through again).
            booked = cap if entry.get("alerted") else int(entry.get("spent", 0))
            self._ledger[rid] = max(booked, self._ledger.get(rid, 0))
        spent = self._ledger  # the calls reserve their estimates in it (see enrich_batch)
        # Two jobs of one review (a replayed original and its retry copy) are asked once.
        unique: dict[str, Job] = {}
        for job in jobs:
            unique.setdefault(job.item.event_id, job)
        outcomes = dict(zip(unique, await self._enrich_fn(list(unique.values()), spent), strict=True))
        return [outcomes[job.item.event_id] for job in jobs]

    def _give_up(self, jobs: Sequence[Job], error: BaseException) -> list[EnrichOutcome]:
        """The heuristic for jobs whose enrichment kept failing; :meth:`_emit` dead-letters them.

        The dead letter is ``llm_exhausted``, as for answers that stayed transient failures:
        the review has its FALLBACK output, and ``reviewpulse dlq replay`` re-enriches it.
        """
        outcomes = []
        for job in jobs:
            job.given_up = f"enrichment failed {job.failures} times: {error!r}"
            outcomes.append(fallback_outcome(enrich_request(job.item.record), reason=job.given_up))
        return outcomes

    # --- 2. an enrichment answered -------------------------------------------------------------
    async def complete(self, jobs: Sequence[Job], outcomes: Sequence[EnrichOutcome]) -> None:
        """Emit each job's outcome, join it into its pane, then ack the job's event."""
        await self._room_for(len(jobs))
        current = [(j, o) for j, o in zip(jobs, outcomes, strict=True) if j.generation == self.generation]
        if len(current) != len(jobs):  # abandoned meanwhile: the partition's next owner replays them
            jobs, outcomes = [j for j, _ in current], [o for _, o in current]
        if not jobs:
            return
        generation = self.generation
        self.unjoined += len(jobs)  # until their joins are durable (_joined_when_delivered)
        metrics.ENRICH_UNJOINED.set(self.unjoined)
        try:
            await self._emit(jobs, outcomes)
        except BaseException:  # nothing joins: the enricher queues them again
            self._joined_durably(generation, len(jobs))
            raise

    async def _emit(self, jobs: Sequence[Job], outcomes: Sequence[EnrichOutcome]) -> None:
        """Send each job's outcome and, once acknowledged, queue it for the next batch's join."""
        now_ms = self.ports.clock_ms()
        pending: list[Awaitable[Any]] = []
        final: list[tuple[Job, EnrichOutcome]] = []
        finals: set[str] = set()
        retried: set[str] = set()
        for job, outcome in zip(jobs, outcomes, strict=True):
            record = job.item.record
            if job.item.kind == RETRY:  # each copy counted retry_returned: all but one are duplicates
                if job.item.event_id in retried:
                    metrics.DUPLICATES.inc()
                    metrics.input_outcome(job.item.origin.topic, "duplicate")
                retried.add(job.item.event_id)
            if job.item.event_id in finals:
                continue  # a second job of the same review (replayed original + retry copy)
            if job.given_up is not None:  # outcome is the heuristic's (_give_up)
                pending.append(await self._dead_letter_exhausted(job, outcome, now_ms=now_ms,
                                                                 attempts=job.failures))
            elif outcome.status is EnrichStatus.TRANSIENT_FAILURE:
                if (self.settings.llm_failure_policy is FailurePolicy.RETRY_THEN_FALLBACK
                        and job.attempt < self.settings.llm_max_attempts):
                    pending.append(await self._send_retry(job, now_ms=now_ms))
                    self._release(job)  # the retry record carries it on: its copy is not a duplicate
                    continue
                pending.append(await self._dead_letter_exhausted(job, outcome, now_ms=now_ms))
                outcome = fallback_outcome(enrich_request(record), reason=outcome.error, text=outcome.text)
            final.append((job, outcome))
            finals.add(job.item.event_id)
            metrics.input_outcome(job.item.origin.topic, "enriched")
            pending += await self._send_enriched(job, outcome, now_ms=now_ms)
        await asyncio.gather(*pending)
        self._ready.append((list(jobs), final))
        self._ready_event.set()

    def _join_ready(self, batches: dict[int, _Batch], *, now_ms: int, closed: Closed) -> list[Job]:
        """Join every answered enrichment into its pane (inside a batch, under the lock).

        Joins wait for the next batch (or :meth:`_joiner`) instead of writing on their own:
        a pane and a day's cost entry are then written once per batch, not once per LLM call.
        Returns the jobs to ack once the batch's state is written.
        """
        jobs: list[Job] = []
        for answered, final in self._ready:
            jobs += [job for job in answered if job.generation == self.generation]
            for job in answered:
                self._release(job)
            for job, outcome in final:
                if job.generation != self.generation:
                    continue
                batch = batches.get(job.partition)
                if batch is None:
                    tables = self.ports.tables_for(job.partition, job.event)
                    batch = batches[job.partition] = _Batch(state=self._state(job.partition, tables),
                                                            tables=tables)
                self._join(batch, job, outcome)
                self._book_cost(batch, job, outcome, now_ms=now_ms, alerts=closed.alerts)
        self._ready.clear()
        self._ready_event.clear()
        return jobs

    async def _joiner(self) -> None:
        """Joins when no batch comes (quiet partitions, a rebalance draining): at most
        ``JOIN_IDLE_S`` after an answer, a batch without events writes them. Its batch fails
        as the agent's does: the worker stops (issue 30, finding 8: the task died silently,
        and answers then waited for the next input batch to join)."""
        while True:
            await self._ready_event.wait()
            await asyncio.sleep(JOIN_IDLE_S)
            if self._ready:
                try:
                    await self.process([])
                except Exception as exc:  # DESIGN §12: restart from the last commit
                    self.stop_worker(f"the enrichment joiner's batch failed: {exc!r}")

    @staticmethod
    def _mark(batch: _Batch, event_id: str) -> int | None:
        """The event's dedupe mark (first offset), as this batch left it or the table holds it."""
        mark = batch.marks.get(event_id)
        return read_dedupe_mark(mark if mark is not None else batch.tables.dedupe.get(event_id))

    def _join(self, batch: _Batch, job: Job, outcome: EnrichOutcome) -> None:
        """Replace the review's provisional label in its pane by the final one, once.

        The pane says whether the review still owes its join (:attr:`PaneAggregate.pending`):
        a replay or a second retry copy that joined before finds nothing to change.
        """
        state, item = batch.state, job.item
        restaurant_id, event_id = item.restaurant_id, item.event_id
        closed_end = state.closure(restaurant_id)["t"]
        window_end = self.spec.tumbling_of(item.occurred_ms)[1]
        if job.late or (closed_end is not None and window_end <= closed_end):
            metrics.ENRICHED_AFTER_CLOSE.inc()
        if not state.has_pane(restaurant_id, job.pane_start_ms):
            return  # collected: every window holding it is final
        if not state.pane(restaurant_id, job.pane_start_ms).owes(event_id):
            return  # joined before (a replay, a second retry copy)
        provisional = job.provisional
        if provisional is None and not job.late:  # a replay or a retry copy: the heuristic is deterministic
            provisional = self._provisional(item)
        enrichment = outcome.enrichment
        assert enrichment is not None
        state.touch(restaurant_id, job.pane_start_ms).join(
            event_id=event_id, provisional=provisional,
            label=str(enrichment.label), score=enrichment.score, categories=enrichment.categories,
            status=str(outcome.status), cache_hit=outcome.cache_hit, tokens_in=outcome.tokens_in,
            tokens_out=outcome.tokens_out, cost_micro_usd=outcome.cost_micro_usd)

    def _book_cost(self, batch: _Batch, job: Job, outcome: EnrichOutcome, *, now_ms: int,
                   alerts: list[tuple[int, dict[str, Any]]]) -> None:
        restaurant_id, tables, daily = job.item.restaurant_id, batch.tables, batch.daily
        day = utc_day(now_ms)[0]
        key = day_key(restaurant_id, day)
        entry = daily.get(key)
        if entry is None:
            entry = daily[key] = {"spent": 0, "alerted": False, **(tables.daily_cost.get(key) or {})}
            # Budgets need today only; yesterday stays for the web view's "today" at midnight.
            for old in batch.state.note_day(restaurant_id, day, keep_from_ms=day - DAY_MS):
                tables.daily_cost.pop(day_key(restaurant_id, old), None)
        entry["spent"] += outcome.cost_micro_usd
        capped = outcome.status is EnrichStatus.BUDGET_SKIPPED and outcome.error == BUDGET_CAP_REASON
        if capped and not entry["alerted"]:
            entry["alerted"] = True
            cap = self.settings.restaurant_daily_cost_cap_micro_usd
            alerts.append((job.partition, budget_exceeded_record(
                restaurant_id=restaurant_id, spent_micro_usd=entry["spent"], cap_micro_usd=cap,
                day_of_ms=now_ms, emitted_at_ms=now_ms)))

    def _release(self, job: Job) -> None:
        """The job's enrichment no longer stands in for its review (joined, or retried)."""
        if not job.owed or job.generation != self.generation:
            return
        job.owed = False
        event_id = job.item.event_id
        left = self._owed.get(event_id, 0) - 1
        if left > 0:
            self._owed[event_id] = left
        else:
            self._owed.pop(event_id, None)

    @staticmethod
    def _provisional(item: Item) -> tuple[str, float, tuple[str, ...]]:
        """What a review is counted with until its enrichment joins: the local heuristic's."""
        entity = item.record["entity"]
        label, score, categories = provisional_label(
            ReviewInput(item.event_id, entity["text"], entity["rating"], entity.get("language")))
        return str(label), score, categories

    def _state(self, partition: int, tables: PartitionTables) -> PartitionState:
        cache = self._caches.get(partition)
        if cache is None:
            cache = self._caches[partition] = PartitionCache()
        return PartitionState(panes=tables.panes, closures=tables.closures, spec=self.spec,
                              partition=partition, retention_ms=self.retention_ms, cache=cache)

    # --- sending -----------------------------------------------------------------------------
    async def _send_enriched(self, job: Job, outcome: EnrichOutcome, *, now_ms: int) -> list[Awaitable[Any]]:
        count_outcome(outcome)
        record = enriched_record(job.item.record, outcome, attempts=job.attempt, enriched_at_ms=now_ms,
                                 received_ms=job.item.origin.timestamp_ms)
        metrics.PROCESSING_LAG.observe(record["processing_lag_ms"] / 1000)
        metrics.EVENT_AGE.observe(record["event_age_ms"] / 1000)
        key = job.item.restaurant_id.encode()
        headers = [(H_TRACE, record["trace_id"].encode())]
        futures = [await self.ports.send(self.topics.enriched, key=key, headers=headers,
                                         value=self.ports.encode("ReviewEnriched", record))]
        if record["sentiment"] == "CRITICAL":
            metrics.CRITICAL_ALERTS.inc()
            log_event("critical_review", restaurant=job.item.restaurant_id, trace_id=record["trace_id"])
            self.ports.remember_critical(record)
            futures.append(await self.ports.send(
                self.topics.critical_alert, key=key, headers=headers,
                value=self.ports.encode("CriticalAlert", critical_alert_record(record))))
        return futures

    async def _send_retry(self, job: Job, *, now_ms: int) -> Awaitable[Any]:
        delay_ms = int(self.settings.llm_retry_delay_s * 1000 * 2 ** (job.attempt - 1))
        item = job.item
        retry = Item(kind=RETRY, record=item.record, origin=item.origin, attempt=job.attempt + 1,
                     not_before_ms=now_ms + delay_ms, pane_start_ms=job.pane_start_ms, late=job.late,
                     first_failure_ms=item.first_failure_ms or now_ms)
        metrics.EVENTS_RETRIED.inc()
        metrics.input_outcome(item.origin.topic, "retry_scheduled")
        log_event("retry_scheduled", restaurant=item.restaurant_id, attempt=job.attempt + 1,
                  delay_ms=delay_ms, trace_id=item.trace_id)
        return await self.ports.send(self.topics.retry, key=item.restaurant_id.encode(),
                                     value=write_item(retry),
                                     headers=[(H_TRACE, (item.trace_id or "").encode())])

    async def _dead_letter_exhausted(self, job: Job, outcome: EnrichOutcome, *, now_ms: int,
                                     attempts: int | None = None) -> Awaitable[Any]:
        """Fallback keeps the flow live; the dead letter keeps the review replayable for the LLM."""
        item = job.item
        return await self.ports.dead_letter(
            item.origin, stage="enrich", reason="llm_exhausted",
            error=RuntimeError(outcome.error or "LLM unavailable"),
            attempts=job.attempt if attempts is None else attempts,
            first_failure_ms=item.first_failure_ms or now_ms, trace_id=item.trace_id)

    async def _send_final(self, aggregates: list[tuple[int, dict[str, Any]]],
                          alerts: list[tuple[int, dict[str, Any]]]) -> list[tuple[str, int, Any]]:
        """Send final aggregates and alerts not sent before a crash (see agents.outbox)."""
        outputs = [(self.topics.aggregates, "RestaurantWindowAggregate", "aggregate_id", p, r)
                   for p, r in aggregates]
        outputs += [(self.topics.restaurant_alerts, "RestaurantAlert", "alert_id", p, r) for p, r in alerts]
        sent = []
        for topic, record_name, id_field, partition, record in outputs:
            if self.outbox.already_sent(partition, record[id_field]):
                log_event("already_sent", id=record[id_field])
                continue
            if record_name == "RestaurantAlert":
                metrics.ALERTS.labels(record["rule"]).inc()
                self.ports.remember_alert(record)
                log_event("restaurant_alert", restaurant=record["restaurant_id"], rule=record["rule"],
                          severity=record["severity"], value=round(record["value"], 3))
            else:
                metrics.AGGREGATES.labels(record["window_kind"]).inc()
            future = await self.ports.send(
                topic, key=record["restaurant_id"].encode(), value=self.ports.encode(record_name, record),
                partition=partition, headers=[(H_ID, record[id_field].encode())])
            sent.append((topic, partition, future))
        return sent

    def _acknowledged(self, sent: list[tuple[str, int, Any]]) -> None:
        for topic, partition, future in sent:
            self.outbox.acknowledged(topic, partition, future.result().offset)

    def _flush(self, partition: int, state: PartitionState, tables: PartitionTables, closed: Closed) -> None:
        state.flush()
        for restaurant_id, record in closed.latest.get(partition, {}).items():
            tables.latest[restaurant_id] = record
        checkpoint = self.outbox.checkpoint(partition)
        if checkpoint is not None:
            tables.closures[checkpoint_key(partition)] = checkpoint

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.enricher.start()
        if self._joiner_task is None:
            self._joiner_task = asyncio.create_task(self._joiner(), name="enrichment-joiner")
            for task in (*self.enricher.tasks, self._joiner_task):
                self.watch(task)

    async def stop(self) -> None:
        await self.enricher.stop()
        if self._joiner_task is not None:
            self._joiner_task.cancel()
            await asyncio.gather(self._joiner_task, return_exceptions=True)
            self._joiner_task = None
        # What the last batches wrote (the joiner's too, now it is stopped), before the producer stops.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.published(), STOP_PUBLISH_S)

    def abandon(self) -> list[Any]:
        """Before Faust waits for unacked events (rebalance, stop): give up every owed review.

        Queued, in flight, or answered but not joined: their offsets stay uncommitted, and
        whoever owns the partition next replays them, finds them folded but not joined, and
        enriches them. A call still under way finishes, but its answer is dropped (an older
        generation): its partition may belong to another worker by then.
        """
        owed = [*self.enricher.abandon(), *self.enricher.in_flight_jobs()]
        owed += [job for answered, _ in self._ready for job in answered]
        self._ready.clear()
        self.generation += 1
        self._owed.clear()
        self.unjoined = 0
        metrics.ENRICH_UNJOINED.set(0)
        self._room.set()
        return [job.event.message for job in owed]


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log_event("enrichment_complete_failed", level=40, error=repr(task.exception()))

