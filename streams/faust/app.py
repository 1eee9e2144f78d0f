"""The app class: our transport, a changelog buffer that holds a batch of table writes,
and the hooks around rebalances and agent errors (streams.faust)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock

from streams.faust.commits import Consumer

logger = logging.getLogger(__name__)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


# --- the app ------------------------------------------------------------------------------
# Faust's changelog buffer (table writes go through ``send_soon``) holds 100 records
# before its conductor stops delivering messages until it drained back to 100. The
# restaurant stage writes a batch's tables at once: before point 6, >= 1 dedupe record per
# event, so 1,000+ records per 1,000-event batch, and the stop hit every batch ("producer
# buffer full" warnings, bench/README.md); a pane record per pane touched still can be
# one per event. Two full batches of writes fit under this bound.
PRODUCER_BUFFER_MAX_MESSAGES = 5_000


class ReviewPulseApp(faust.App):
    """A faust.App with our transport, a changelog buffer that holds a batch of table writes,
    and a hook that runs before Faust waits for every unacked event (rebalance, stop).

    ``before_wait_empty`` returns the messages the app gives up on: the restaurant stage's
    queued enrichments of partitions it is losing. They stay uncommitted (the next owner
    reads them again) and Faust stops waiting for them, so a long LLM backlog never holds
    a rebalance for minutes.
    """

    fetch_max_wait_ms: int = 1500
    tansu: bool = False  # the broker is Tansu: point 2's probe runs (Settings.broker_flavor)
    settings: Any  # streams.settings.Settings
    topics_: Any  # streams.topics.Topics
    tables_: Any  # tables.state.Tables
    readiness: Any  # streams.readiness.Readiness
    health: Any  # streams.health.Health
    before_wait_empty: Callable[[], Iterable[Any]] | None = None
    # Under exactly-once, the restaurant stage's transactional producers (streams.transactions):
    # recovery fences a partition's earlier owner before it reads the changelog's end (point 12).
    stage_transactions: Any = None

    # Run once before any child service (the consumer included) starts; the composition
    # root (streams.app) sets it: every topic we use is made to exist there.
    before_first_start: Callable[[Any], Awaitable[None]] | None = None

    async def on_first_start(self) -> None:
        await super().on_first_start()
        if self.before_first_start is not None:
            await self.before_first_start(self)

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer(self) -> Any:
        producer = super()._new_producer()
        producer.buffer.max_messages = PRODUCER_BUFFER_MAX_MESSAGES
        return producer

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """Every agent's error handler: Faust's own (it commits), then the worker's health is
        told. Faust then restarts the actor without the batch it held, and ``app.crashed``
        stays False (streams.health)."""
        await super()._on_agent_error(agent, exc)
        await self.health.agent_crashed(agent, exc)

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        if self.before_wait_empty is not None:
            abandoned = list(self.before_wait_empty())
            with ack_lock:  # point 11
                for message in abandoned:
                    consumer._unacked_messages.discard(message)
            if abandoned:
                logger.info("Abandoned %d queued enrichments (left uncommitted)", len(abandoned))
        await super()._consumer_wait_empty(consumer, logger)
