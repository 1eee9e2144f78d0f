"""The restaurant stage: the path of a batch and the path of an answer, in one place.

No Faust and no Kafka here: the stage receives its collaborators (:class:`Ports`: tables as
mappings, senders as callables, a clock), so unit tests drive it with dicts and fakes.
The LLM is beside the flow, never in front of it (DESIGN §3):

1. :meth:`StageCore.process` handles one batch of the by-restaurant topic. A new review or
   order is folded into its pane at once, the review with the local heuristic's
   *provisional* label (:mod:`.fold`); answered enrichments join their panes (:mod:`.joins`);
   due windows close (:mod:`.closing`) and their final aggregates go out (:mod:`.outputs`);
   the batch's tables are written once its outputs are acknowledged, and made durable behind
   it (:mod:`.publish`: the next batch does not wait; batches publish in order). Every event
   is acked once that is done, except the reviews, which go to the
   :class:`~agents.stage.enricher.Enricher`.
2. :meth:`StageCore.complete` runs when an enrichment call answers: it sends the review's
   ``reviews.enriched`` (and critical alert), or its retry record, or its dead letter
   (:mod:`.completion`); the next batch joins the final label into the review's pane
   (replacing the provisional one) and books the cost (:mod:`.costs`); the review is acked
   only once that batch is durable. So a review's input offset is committed only once its
   outcome is durable: Faust commits a partition up to its first unacked offset, the
   incomplete-offset tracking of Confluent's Parallel Consumer.

A window that closes before a review's answer arrives reports it in
``provisional_labels``; the answer still goes out on ``reviews.enriched`` and may join a
pane that later hopping windows use, but never changes an aggregate already sent.

**The lock.** Only a batch takes :attr:`StageCore.lock`, for its whole read-modify-write of
the tables (the idle joiner's batch without events too). :meth:`~StageCore.complete` never
takes it: it only sends and queues the answer for the next batch. So a join never writes
state before its batch's outputs are acknowledged, and two batches never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents.llm.outcome import EnrichOutcome, fallback_outcome
from agents.llm.records import enrich_request
from agents.outbox import Outbox
from agents.stage.batch import PartitionBatch, States
from agents.stage.closing import Closer
from agents.stage.completion import emit, give_up
from agents.stage.costs import Costs
from agents.stage.enricher import Enricher
from agents.stage.fold import Folder, Read
from agents.stage.jobs import Job, OwedReviews, enrich_attempts, job_bytes
from agents.stage.joins import Joined, Joins
from agents.stage.outputs import Outputs
from agents.stage.ports import Ack, OutputTopics, Ports
from agents.stage.publish import Publisher, Unjoined
from agents.stage.tracking import ReviewTracker
from agents.stage.watermarks import Watermarks
from streams import metrics
from streams.clean_stop import stop_now
from streams.logs import event as log_event
from streams.protocol import Origin, ProtocolError, checkpoint_key
from streams.settings import ProcessingGuarantee, Settings
from tables.panes import Closed
from tables.rules import RuleThresholds
from tables.values import pane_pending_cap
from tables.windows import WindowSpec

BACKLOG_REASON = "enrichment backlog full"
JOIN_IDLE_S = 0.2  # longest an answered review waits for its join when no batch comes
STOP_PUBLISH_S = 10.0  # at stop, the longest we wait for the last batches' changelog records

Enrich = Callable[[Sequence[Job], dict[str, int]], Awaitable[list[EnrichOutcome]]]
# (jobs, today's spend ledger to reserve estimates in) -> one outcome per job


async def _no_events(event: Any) -> None:
    raise AssertionError("a batch without events acked an event")


class StageCore:
    """The restaurant stage of one worker: every partition it owns, one batch at a time."""

    def __init__(self, *, ports: Ports, topics: OutputTopics, settings: Settings, outbox: Outbox,
                 enrich: Enrich) -> None:
        self.ports, self.settings, self.outbox = ports, settings, outbox
        self.spec = WindowSpec.from_settings(settings)
        self.thresholds = RuleThresholds.from_settings(settings)
        self.lock = asyncio.Lock()
        self.generation = 0  # abandon() moves it: an answer of an older one is dropped
        # Under exactly-once an answer's sends are made by the batch joining it, and batches
        # run one after the other: each is one transaction per partition (docs/exactly-once.md).
        self.exactly_once = settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE
        self.watermarks = Watermarks(tick_skew_ms=int(settings.event_time_max_skew_s * 1000))
        self.owed = OwedReviews()
        self.tracker = ReviewTracker(enabled=settings.review_states)
        self.states = States(spec=self.spec, retention_ms=int(settings.state_retention_s * 1000))
        self.outputs = Outputs(ports=ports, topics=topics, settings=settings, outbox=outbox)
        self.costs = Costs(cap_micro_usd=settings.restaurant_daily_cost_cap_micro_usd,
                           tables_for=ports.tables_for, warning_share=settings.budget_warning_share)
        self.folder = Folder(spec=self.spec, watermarks=self.watermarks, owed=self.owed, outputs=self.outputs,
                             tracker=self.tracker,
                             pane_pending_cap=pane_pending_cap(max_pending=settings.pane_max_pending,
                                                               id_max_chars=settings.id_max_chars))
        self.closer = Closer(watermarks=self.watermarks, thresholds=self.thresholds)
        self.joins = Joins(spec=self.spec, ports=ports, states=self.states, costs=self.costs, owed=self.owed,
                           tracker=self.tracker)
        self.publisher = Publisher(ports)
        self.unjoined = Unjoined(settings.enrich_max_unjoined)
        self._enrich_fn = enrich
        self.enricher = Enricher(enrich=self._enrich, complete=self.complete, give_up=give_up,
                                 batch_size=settings.llm_batch_size,
                                 concurrency=settings.llm_concurrency,
                                 max_pending=settings.enrich_max_pending,
                                 max_attempts=enrich_attempts(settings),
                                 linger_s=settings.llm_batch_linger_ms / 1000,
                                 max_bytes=settings.enrich_backlog_max_bytes)
        self._joiner_task: asyncio.Task[None] | None = None
        self.stop_worker: Callable[[str], None] = stop_now  # a test replaces it
        # Told of each endless task (streams.health.Health.watch): its end is the worker's death.
        self.watch: Callable[[asyncio.Task[Any]], None] = lambda task: None

    # --- 1. a batch of the by-restaurant topic ---------------------------------------------
    async def process(self, events: Sequence[Any], ack: Ack) -> None:
        """One batch; each event is acked with its stream's ``ack`` once its outcome is durable."""
        by_partition: dict[int, list[Any]] = {}
        for ev in events:
            by_partition.setdefault(ev.message.partition, []).append(ev)
        async with self.lock:
            if self.exactly_once:  # under the lock: the joiner's batch and the agent's may both wait
                await self.publisher.published()
            self.publisher.raise_failure()  # an earlier batch's publication failed: this one must not run
            try:
                jobs = await self._batch(by_partition, ack)
            except BaseException:
                self.states.forget()  # records it changed in memory were not written
                raise
        self._submit(jobs, ack)

    async def _batch(self, by_partition: dict[int, list[Any]], ack: Ack) -> list[Job]:
        """Read, join, close, send, then write the local stores; returns the reviews to enrich.

        Making that state durable is chained behind the batch, so the next batch starts
        without waiting for the broker. What it wrote to the tables is published even when
        it fails half-way, so the changelogs never fall behind the local stores (Faust sent
        each write as it happened); its events are then not acked.
        """
        now_ms = self.ports.clock_ms()
        batches: dict[int, PartitionBatch] = {}
        jobs: list[Job] = []
        pending: list[Awaitable[Any]] = []
        joined, acks = Joined(generation=self.generation), []
        committed: set[int] = set()  # a failed batch commits no transaction (exactly-once)
        try:
            for partition, evs in by_partition.items():
                tables = self.ports.tables_for(partition, evs[-1])
                batch = batches[partition] = self.states.open(partition, tables)
                for ev in evs:
                    read = await self._read(ev, batch, now_ms=now_ms)
                    jobs += read.jobs
                    pending += read.pending
            joined = self.joins.join_into(batches, generation=self.generation, now_ms=now_ms)
            for topic, kwargs in joined.sends:  # answers' records, kept for this batch's transaction
                pending.append(await self.ports.send(topic, **kwargs))
            closed = Closed(alerts=list(joined.alerts))
            for partition, batch in batches.items():
                if partition not in self.outbox.recovered:
                    await self.outbox.recover(partition, batch.tables.closures.get(checkpoint_key(partition)))
                _add(closed, self.closer.close_due(partition, batch, now_ms=now_ms))
            sent = await self.outputs.finals(closed.aggregates, closed.alerts)
            await asyncio.gather(*pending, *(future for _, _, future in sent))
            # Outputs are acknowledged: now the state may say "applied".
            self.outputs.acknowledged(sent)
            self._write(batches, closed)
            self.tracker.written(joined.jobs)
            owed = {id(job.event) for job in jobs}
            acks = [(ack, ev) for evs in by_partition.values() for ev in evs if id(ev) not in owed]
            acks += [(job.ack, job.event) for job in joined.jobs]  # their outcome was sent, joined here
            committed = set(batches) if self.exactly_once else set()
            return jobs
        finally:
            n, generation = len(joined.jobs), joined.generation
            self.publisher.publish([batch.tables for batch in batches.values()], partitions=committed,
                                   marked=any(batch.marks for batch in batches.values()), acks=acks,
                                   **({"then": lambda: self.unjoined.joined(generation, n)} if n else {}))

    async def _read(self, ev: Any, batch: PartitionBatch, *, now_ms: int) -> Read:
        """A record's failure is that record's dead letter, never the batch's."""
        try:
            return await self.folder.read(ev, batch, now_ms=now_ms)
        except ProtocolError as exc:
            error, reason = exc, exc.reason
        except Exception as exc:
            log_event("record_failed", level=40, stage="restaurant", error=repr(exc))
            error, reason = exc, "processing_error"
        metrics.input_outcome(ev.message.topic, "dead_lettered")
        self.tracker.dead_lettered(batch, ev.message.value, reason, at_ms=now_ms)
        return Read(pending=[await self.ports.dead_letter(
            Origin.of(ev.message), stage="restaurant", reason=reason, error=error)])

    def _write(self, batches: dict[int, PartitionBatch], closed: Closed) -> None:
        """The batch's state into the local stores; its changelog records go out behind it.
        The marks first: they are made durable before the panes (agents.stage.publish)."""
        for batch in batches.values():
            if batch.marks:  # in the worker, one changelog record (streams.faust point 6)
                batch.tables.dedupe.update(batch.marks)
        for partition, batch in batches.items():
            batch.tables.daily_cost.update(batch.daily)
            if batch.reviews:
                batch.tables.review_states.update(batch.reviews)
            batch.state.flush()
            for restaurant_id, record in closed.latest.get(partition, {}).items():
                batch.tables.latest[restaurant_id] = record
            checkpoint = self.outbox.checkpoint(partition)
            if checkpoint is not None:
                batch.tables.closures[checkpoint_key(partition)] = checkpoint
            self.states.trim(partition)

    def _submit(self, jobs: list[Job], ack: Ack) -> None:
        """Hand the batch's reviews to the enricher; a full backlog gets the heuristic now."""
        if not jobs:
            return
        for job in jobs:
            job.ack = ack
            job.size_bytes = job_bytes(job)
            self.owed.submit(job, generation=self.generation)
        self.tracker.queued(jobs, at_ms=self.ports.clock_ms())
        refused = self.enricher.submit(jobs)
        if refused:  # a full backlog (reviews or bytes): the flow goes on
            metrics.ENRICH_SHED.inc(len(refused))
            outcomes = [fallback_outcome(enrich_request(job.item.record), reason=BACKLOG_REASON)
                        for job in refused]
            task = asyncio.ensure_future(self.complete(refused, outcomes))
            task.add_done_callback(_log_failure)

    async def _enrich(self, jobs: Sequence[Job]) -> list[EnrichOutcome]:
        """Today's spend of the jobs' restaurants, then one enrichment call; two jobs of one
        review (a replayed original and its retry copy) are asked once."""
        spent = self.costs.ledger(jobs, now_ms=self.ports.clock_ms())
        unique: dict[str, Job] = {}
        for job in jobs:
            unique.setdefault(job.item.event_id, job)
        outcomes = dict(zip(unique, await self._enrich_fn(list(unique.values()), spent), strict=True))
        return [outcomes[job.item.event_id] for job in jobs]

    # --- 2. an enrichment answered -------------------------------------------------------------
    async def complete(self, jobs: Sequence[Job], outcomes: Sequence[EnrichOutcome]) -> None:
        """Emit each job's outcome; the next batch joins it, then acks the job's event."""
        await self.unjoined.room_for(len(jobs))
        current = [(j, o) for j, o in zip(jobs, outcomes, strict=True) if j.generation == self.generation]
        if not current:  # abandoned meanwhile: the partition's next owner replays them
            return
        jobs, outcomes = [j for j, _ in current], [o for _, o in current]
        generation = self.generation
        self.unjoined.add(len(jobs))  # until their joins are durable
        outputs, kept = self.outputs.deferred() if self.exactly_once else (self.outputs, None)
        try:
            final = await emit(jobs, outcomes, outputs=outputs, settings=self.settings,
                               **({"mark": kept.mark} if kept is not None else {}),
                               now_ms=self.ports.clock_ms(),
                               retried=lambda job: self.owed.release(job, generation=self.generation))
        except BaseException:  # nothing joins: the enricher queues them again
            self.unjoined.joined(generation, len(jobs))
            raise
        self.joins.queue(list(jobs), final, kept.sends if kept is not None else None)

    async def _joiner(self) -> None:
        """Joins when no batch comes (quiet partitions, a rebalance draining): at most
        ``JOIN_IDLE_S`` after an answer, a batch without events writes them. Its batch fails
        as the agent's does: the worker stops (issue 30, finding 8: the task died silently,
        and answers then waited for the next input batch to join)."""
        while True:
            await self.joins.waiting.wait()
            await asyncio.sleep(JOIN_IDLE_S)
            if self.joins:
                try:
                    await self.process([], _no_events)
                except Exception as exc:  # DESIGN §12: restart from the last commit
                    self.stop_worker(f"the enrichment joiner's batch failed: {exc!r}")

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

    async def published(self) -> None:
        """Wait until every batch so far is durable and its events acked (or failed)."""
        await self.publisher.published()

    async def settled(self) -> None:
        """Wait for the batch under way (if any), then for every publication: under
        exactly-once, no transaction is open once this returns, until the next batch."""
        async with self.lock:
            await self.publisher.published()

    def abandon(self) -> list[Any]:
        """Before Faust waits for unacked events (rebalance, stop): give up every owed review.

        Queued, in flight, or answered but not joined: their offsets stay uncommitted, and
        whoever owns the partition next replays them, finds them folded but not joined, and
        enriches them. A call still under way finishes, but its answer is dropped (an older
        generation): its partition may belong to another worker by then.
        """
        owed = [*self.enricher.abandon(), *self.enricher.in_flight_jobs(), *self.joins.drop()]
        self.generation += 1
        self.owed.clear()
        self.tracker.clear()
        self.unjoined.reset(self.generation)
        return [job.event.message for job in owed]

    def reset_due(self) -> None:
        """After a rebalance: rebuild each partition's due index from its table index, and
        read its records from the tables again (they were restored, maybe by another owner)."""
        self.closer.reset()
        self.states.forget()


def _add(into: Closed, closed: Closed) -> None:
    into.aggregates += closed.aggregates
    into.alerts += closed.alerts
    for partition, latest in closed.latest.items():
        into.latest.setdefault(partition, {}).update(latest)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log_event("enrichment_complete_failed", level=40, error=repr(task.exception()))
