"""Enrichment beside the flow: a queue of reviews and ``concurrency`` LLM workers.

The restaurant stage folds a review at first sight and hands it here; it never waits for
the answer. Each worker takes up to ``batch_size`` queued reviews, makes one enrichment
call (one LLM request, plus split retries on a malformed answer) and hands the outcomes
back to the stage's ``complete``, which emits and joins them. LLM parallelism is therefore
``concurrency`` requests of ``batch_size`` reviews, whatever the stage's batch looks like.

The queue is bounded in reviews (``max_pending``) and in bytes (``max_bytes``, each job
counted as its ``size_bytes``; issue 30, finding 9: 20,000 reviews of up to ~70 KB each
was no bound on memory): past either, :meth:`Enricher.submit` refuses reviews and the stage
gives them the heuristic at once, so a slow LLM degrades enrichment, never the worker's
memory or the flow. The job objects are the stage's; this module only needs
their ``partition`` to abandon the queued ones of partitions a rebalance takes away, and
their ``failures`` to bound their attempts.

Attempts are bounded (issue 30, finding 7): a call that raised instead of answering goes
back to the queue at most ``max_attempts`` times in all (each try may be a paid LLM call,
and the job's offset stays uncommitted meanwhile); a completion that failed is tried
again with the outcomes it has, never with a new call. A job whose attempts are spent is
completed with what ``give_up`` returns (the stage's heuristic FALLBACK and a dead
letter), so its offset is released. Only a failure whose error says ``retriable`` (a
broker not answering) waits without counting: asking again is what will fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from agents.llm.outcome import EnrichOutcome
from streams import metrics

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_S = 1.0  # the producer retries internally; this only spaces out whole attempts


class QueuedJob(Protocol):
    """What the enricher reads of a job (the stage's :class:`agents.stage.jobs.Job`)."""

    partition: int
    failures: int  # failed attempts at enriching or completing it, counted here
    size_bytes: int  # what it holds in memory, estimated once by its owner


Enrich = Callable[[Sequence[QueuedJob]], Awaitable[list[EnrichOutcome]]]
Complete = Callable[[Sequence[QueuedJob], Sequence[EnrichOutcome]], Awaitable[None]]
# (jobs whose attempts are spent, the last error) -> one final outcome per job
GiveUp = Callable[[Sequence[QueuedJob], BaseException], list[EnrichOutcome]]


class Enricher:
    def __init__(self, *, enrich: Enrich, complete: Complete, give_up: GiveUp, batch_size: int,
                 concurrency: int, max_pending: int, max_attempts: int, linger_s: float = 0.0,
                 max_bytes: int | None = None) -> None:
        if batch_size < 1 or concurrency < 1 or max_pending < 1 or max_attempts < 1:
            raise ValueError("batch_size, concurrency, max_pending and max_attempts must be at least 1")
        self._enrich = enrich
        self._complete = complete
        self._give_up = give_up
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self._queue: deque[QueuedJob] = deque()
        self._queued = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self.in_flight = 0
        self._queued_bytes = 0
        self._in_flight_bytes = 0
        self.shed_for_bytes = 0  # refused while under max_pending: the byte bound held them off
        self._in_flight_jobs: dict[int, list[QueuedJob]] = {}  # per worker: the chunk it is enriching

    @property
    def pending(self) -> int:
        """Reviews queued or in flight."""
        return len(self._queue) + self.in_flight

    @property
    def pending_bytes(self) -> int:
        """Bytes of the reviews queued or in flight."""
        return self._queued_bytes + self._in_flight_bytes

    def submit(self, jobs: Iterable[QueuedJob]) -> list[QueuedJob]:
        """Queue ``jobs``; returns the ones refused because the backlog is full (in reviews
        or in bytes). A refused job is never dropped: the caller gives it the heuristic."""
        refused = []
        for job in jobs:
            if self.pending >= self.max_pending:
                refused.append(job)
            elif self.max_bytes is not None and self.pending_bytes + job.size_bytes > self.max_bytes:
                refused.append(job)
                self.shed_for_bytes += 1
                metrics.MEMORY_EVICTED.labels("enrich_backlog").inc()
            else:
                self._queue.append(job)
                self._queued_bytes += job.size_bytes
        if self._queue:
            self._queued.set()
        self._report()
        return refused

    def _report(self) -> None:
        metrics.ENRICH_PENDING.set(self.pending)
        metrics.MEMORY_BYTES.labels("enrich_backlog").set(self.pending_bytes)

    def abandon(self, partitions: Iterable[int] | None = None) -> list[QueuedJob]:
        """Drop the queued (not in flight) jobs of ``partitions`` (all when None) and return them."""
        wanted = None if partitions is None else set(partitions)
        kept, dropped = deque(), []
        for job in self._queue:
            (dropped if wanted is None or job.partition in wanted else kept).append(job)
        self._queue = kept
        self._queued_bytes -= sum(job.size_bytes for job in dropped)
        self._report()
        return dropped

    def in_flight_jobs(self) -> list[QueuedJob]:
        """The jobs whose enrichment call is under way."""
        return [job for chunk in self._in_flight_jobs.values() for job in chunk]

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The LLM workers' tasks: each runs until :meth:`stop` (the worker's health watches them)."""
        return list(self._workers)

    def start(self) -> None:
        if not self._workers:
            self._workers = [asyncio.create_task(self._work(), name=f"enricher-{i}")
                             for i in range(self.concurrency)]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def _work(self) -> None:
        """Take a batch, call, hand the outcomes on; the next call starts while they are emitted.

        ``complete`` waits for its outputs' acknowledgements (a produce round trip). Awaited
        here, it made each worker's cycle the LLM latency plus that round trip: at 50 ms the
        8 workers enriched ~900 of 1,000 reviews/s in bench phase b and a200 reached 90% of
        its ceiling. Each worker now keeps at most one completion running beside its next
        call (completions of one worker stay in order, and the backlog stays bounded).
        """
        completing: asyncio.Task[None] | None = None
        try:
            while True:
                chunk = self._fly(await self._take())
                try:
                    outcomes = await self._enrich(chunk)
                except asyncio.CancelledError:
                    self._done(chunk)
                    raise
                except Exception as exc:  # no answer at all (not an outcome): counted, bounded
                    self._done(chunk)
                    again, spent = self._count_failure(chunk, exc, "enriching")
                    chunk = self._fly(spent)  # in flight throughout, so abandon() always sees it
                    outcomes = self._give_up(spent, exc) if spent else []
                    if again:
                        try:
                            await self._retry_later(self._fly(again))
                        except asyncio.CancelledError:
                            self._done(chunk)
                            raise
                    if not spent:
                        self._done(chunk)
                        continue
                if completing is not None:
                    await completing
                completing = asyncio.create_task(self._finish(chunk, outcomes))
        finally:
            if completing is not None and not completing.done():
                completing.cancel()
                await asyncio.gather(completing, return_exceptions=True)

    async def _take(self) -> list[QueuedJob]:
        """Up to ``batch_size`` queued jobs, once there are any (lingering for a fuller batch)."""
        while True:
            while not self._queue:
                self._queued.clear()
                await self._queued.wait()
            if len(self._queue) < self.batch_size and self.linger_s > 0:
                # Let the batch fill: a request per few reviews would multiply LLM calls and
                # the shared prompt's tokens (bench: a0 halved with 1-3 reviews per request).
                deadline = asyncio.get_running_loop().time() + self.linger_s
                while len(self._queue) < self.batch_size:
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0:
                        break
                    self._queued.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._queued.wait(), left)
                if not self._queue:  # another worker took them meanwhile
                    continue
            taken = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
            self._queued_bytes -= sum(job.size_bytes for job in taken)
            return taken

    async def _finish(self, chunk: list[QueuedJob], outcomes: list[EnrichOutcome]) -> None:
        """Complete ``chunk`` until it is done; a failure is tried again with the same outcomes.

        A new LLM call would pay again for answers already here. A job whose attempts are
        spent gets ``give_up``'s outcome instead of its own (an answer whose outputs will
        not send, say, will not send the next time either); from then on only the broker
        can hold it, and that waits, logged.
        """
        try:
            while True:
                try:
                    await self._complete(chunk, outcomes)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a send failed (broker trouble), or an output will not encode
                    _, spent = self._count_failure(chunk, exc, "completing", retriable_waits=True)
                    if spent:
                        given = iter(self._give_up(spent, exc))
                        ids = {id(job) for job in spent}
                        outcomes = [next(given) if id(job) in ids else outcome
                                    for job, outcome in zip(chunk, outcomes, strict=True)]
                    await asyncio.sleep(RETRY_AFTER_FAILURE_S)
        finally:
            self._done(chunk)

    def _count_failure(self, chunk: list[QueuedJob], exc: Exception, what: str, *,
                       retriable_waits: bool = False) -> tuple[list[QueuedJob], list[QueuedJob]]:
        """Count a failed attempt of each job; returns the jobs to try again and those whose
        attempts are now spent. With ``retriable_waits``, an error flagged ``retriable`` is not
        counted (trying again costs nothing but the wait); a call is always counted (it may
        have been paid for)."""
        retriable = retriable_waits and bool(getattr(exc, "retriable", False))
        again, spent = [], []
        for job in chunk:
            if not retriable:
                job.failures += 1
            (spent if job.failures >= self.max_attempts else again).append(job)
        log.error("%s %d enrichments failed (%s): %d will be tried again in %.0f s, %d get the fallback",
                  what, len(chunk), "retriable, not counted" if retriable else "counted",
                  len(again), RETRY_AFTER_FAILURE_S, len(spent), exc_info=exc)
        return again, spent

    async def _retry_later(self, chunk: list[QueuedJob]) -> None:
        """The chunk's jobs go back to the head of the queue after a pause (still unacked)."""
        try:
            await asyncio.sleep(RETRY_AFTER_FAILURE_S)
            self._queue.extendleft(reversed(chunk))
            self._queued_bytes += sum(job.size_bytes for job in chunk)
            self._queued.set()
        finally:
            self._done(chunk)

    def _fly(self, chunk: list[QueuedJob]) -> list[QueuedJob]:
        """``chunk`` is in flight (abandon() sees it) until :meth:`_done`."""
        self.in_flight += len(chunk)
        self._in_flight_bytes += sum(job.size_bytes for job in chunk)
        self._in_flight_jobs[id(chunk)] = chunk
        return chunk

    def _done(self, chunk: list[QueuedJob]) -> None:
        self.in_flight -= len(chunk)
        self._in_flight_bytes -= sum(job.size_bytes for job in chunk)
        self._in_flight_jobs.pop(id(chunk), None)
        self._report()
