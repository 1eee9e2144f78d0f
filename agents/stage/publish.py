"""Durability: each batch's state made durable after the previous batch's, then its events acked.

In order, per batch: the dedupe marks are made durable before the panes (a pane that
survived a crash without its events' marks would count a copy decode re-forwards, at a new
offset, a second time); the changelog records follow those of the batch before (the last
record of a key is its state on restore); an event is acked only once its batch's records
are sent (Faust flushes the producer before it commits). None of it holds the stage's lock
or the next batch: the marks' flush is a produce round trip, about half of a batch's time
when it was awaited inside it (bench/HISTORY.md).

A publication that fails is reported to the next batch, which raises it: the worker then
stops and restarts from its last commit (DESIGN §12).

:class:`Unjoined` bounds the answers sent and not yet durably joined: what a kill -9
enriches again (``enrich_max_unjoined``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents.stage.ports import Ack, Ports
from streams import metrics
from streams.logs import event as log_event
from tables.state import PartitionTables


def _nothing() -> None:
    return None


class Publisher:
    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self._publishing: asyncio.Future[None] | None = None  # the last batch's, chained
        self._error: BaseException | None = None

    def raise_failure(self) -> None:
        """Raise an earlier batch's publication failure, once (the next batch must not run)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def publish(self, written: list[PartitionTables], *, marked: bool, acks: list[tuple[Ack, Any]],
                partitions: set[int] | frozenset[int] = frozenset(),
                then: Callable[[], None] = _nothing) -> None:
        """Chain the batch's publication behind the previous one; ``then`` runs once its
        changelog records are acknowledged (or failed: a broker error must not stop
        enrichment for good), without the chain waiting for it."""
        if not (written or acks):  # marks are written only by a batch with tables
            then()
            return
        self._publishing = task = asyncio.ensure_future(
            self._published(self._publishing, written, marked=marked, acks=acks, partitions=partitions,
                            then=then))
        task.add_done_callback(self._on_published)

    async def _published(self, previous: asyncio.Future[None] | None, written: list[PartitionTables], *,
                         marked: bool, acks: list[tuple[Ack, Any]], partitions: set[int] | frozenset[int],
                         then: Callable[[], None]) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its outcome is its own: reported by _on_published
        deliveries: Sequence[Awaitable[Any]] = ()
        try:
            try:
                if marked:
                    await self.ports.flush_producer()
            finally:
                deliveries = await self.ports.publish_tables(written)
            for ack, event in acks:
                await ack(event)
            if partitions:  # exactly-once: the partitions' transactions, with their input offsets
                await self.ports.commit_batch(partitions)
        finally:
            if then is not _nothing:
                delivered = asyncio.gather(*deliveries, return_exceptions=True)
                delivered.add_done_callback(lambda _: then())

    def _on_published(self, task: asyncio.Future[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log_event("publish_failed", level=40, error=repr(task.exception()))
        self._error = task.exception()

    async def published(self) -> None:
        """Wait until every batch so far is durable and its events acked (or failed)."""
        while self._publishing is not None and not self._publishing.done():
            await asyncio.wait([self._publishing])


class Unjoined:
    """Reviews whose outputs are sent (or being sent) and whose join is not yet durable.

    Each is a review a kill -9 enriches twice (its offset replays, its pane still owes it).
    Joins become durable at batch pace, so without this bound a burst of fast answers (a
    backlog after a restart, an LLM at 5 ms) left hundreds in that state: 0-260 repeats in
    test_crash_enrichment. Completions wait while it is at the limit.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.generation = 0  # an older generation's joins were reset by abandon()
        self._room = asyncio.Event()

    async def room_for(self, n: int) -> None:
        """Wait until ``n`` more answered reviews fit under the limit."""
        while self.count and self.count + n > self.limit:
            self._room.clear()
            await self._room.wait()

    def add(self, n: int) -> None:
        self.count += n
        metrics.ENRICH_UNJOINED.set(self.count)

    def joined(self, generation: int, n: int) -> None:
        """``n`` answers of ``generation`` are durably joined (or will never be)."""
        if n and generation == self.generation:
            self.count -= n
            metrics.ENRICH_UNJOINED.set(self.count)
            self._room.set()

    def reset(self, generation: int) -> None:
        """A rebalance gave up every owed review: none is waiting to join any more."""
        self.generation, self.count = generation, 0
        metrics.ENRICH_UNJOINED.set(0)
        self._room.set()
