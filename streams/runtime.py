"""The composition root: one Faust service builds, starts and closes every collaborator.

Codecs and dead letters, the LLM client (with its cache, budget and breaker), the outbox,
the HTTP client the web view routes with, and the restaurant stage's core with its
enrichment workers. It imports what it builds at module level; nothing is built at
import: :func:`install` only registers the service, and agents ``await runtime.ready()``
before their first batch, so no agent encodes before the output schemas are registered.
Stopping closes every client.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import mode
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types import TP

from agents.llm.batch import enrich_batch
from agents.llm.outcome import EnrichOutcome
from agents.llm.quotas import QuotaAlert, share_of
from agents.llm.records import enrich_request
from agents.llm.services import LLMServices
from agents.outbox import Outbox, kafka_scanner
from agents.stage import Job, OutputTopics, Ports, StageCore
from streams import metrics
from streams.codecs import AvroCodecs
from streams.delivery import translate
from streams.dlq import DeadLetters
from streams.faust.app import ReviewPulseApp
from streams.faust.tables import BatchedTable, BoundBundle, BoundMarks, BoundTable
from streams.logs import event as log_event
from streams.settings import ProcessingGuarantee
from streams.transactions import StageTransactions
from tables.state import PartitionTables
from tables.webdata import configure, recent

# httpx (the registry and web-routing clients) logs every request at INFO ("HTTP Request:
# POST ... 200 OK"): noise in the worker's log. Metrics count what matters.
logging.getLogger("httpx").setLevel(logging.WARNING)

# The garbage collector, tuned for a long-running worker (what Instagram did for its web
# servers): what exists once the worker is built (modules, Faust's services, the schemas)
# is frozen out of every collection, and the youngest generation is collected every 20,000
# net allocations instead of 700. With the defaults a0 ran ~1,700 collections a minute and
# the oldest generation's took up to 85 ms each, in the stage's path; see bench/HISTORY.md.
GC_THRESHOLDS = (20_000, 20, 20)

# The stage's busy tables send their changelog records once per batch (streams.faust
# point 7); the global table of latest aggregates keeps Faust's own write path (a few writes
# per closed window), the dedupe table its one marks record per batch (point 6), and the
# review states likewise (a record per 200 states of a batch).
BATCHED_TABLES = ("panes", "closures", "daily_cost")
HELD_TABLES = ("dedupe", "review_states")  # their batch records, sent by publish under exactly-once

ROUTING_TIMEOUT_S = 3.0  # a per-restaurant read is a few table gets: 3 s means the owner is stuck


class Runtime:
    """Everything a worker's agents and web view share, built on start and closed on stop."""

    codecs: AvroCodecs
    dead_letters: DeadLetters
    llm: LLMServices
    core: StageCore
    http: httpx.AsyncClient
    send: Callable[..., Awaitable[Any]]  # (topic, *, key, value, partition=None, headers=None)

    def __init__(self, app: ReviewPulseApp) -> None:
        self.app = app
        self._started = asyncio.Event()

    async def start(self) -> None:
        app, settings = self.app, self.app.settings
        configure(history_max_bytes=settings.web_history_max_bytes,
                  recent_max_bytes=settings.web_recent_max_bytes)
        topics, tables = app.topics_, app.tables_
        # Faust creates the internal topics it consumes; the ones we only produce to must be
        # declared here, or the first send waits on metadata for a topic that never comes.
        for topic in (topics.enriched, topics.critical_alert, topics.aggregates,
                      topics.restaurant_alerts, topics.budget_alerts, topics.dlq, topics.retry,
                      topics.by_restaurant):
            await topic.maybe_declare()
        self.codecs = AvroCodecs(settings)
        await self.codecs.start()
        self.dead_letters = DeadLetters(topic=topics.dlq, codecs=self.codecs)
        self.llm = LLMServices.from_settings(settings)
        self.llm.budgets.warn_share = settings.budget_warning_share
        self.llm.budgets.on_alert = self._budget_alert
        self.http = httpx.AsyncClient(timeout=ROUTING_TIMEOUT_S)
        producer = app.producer
        by_restaurant = topics.by_restaurant.get_topic_name()
        exactly_once = settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE
        txns = self.txns
        if txns is not None:  # its producers follow every assignment from the first (_on_assigned)
            app.consumer.transactional_topics = frozenset({by_restaurant})

        async def send(topic: str, *, key: bytes, value: bytes, partition: int | None = None,
                       headers: list[tuple[str, bytes]] | None = None,
                       stage_partition: int | None = None) -> Any:
            # Our records are bytes already: straight to Faust's producer (the same aiokafka
            # producer, partitioner and flush), without Topic.send's FutureMessage, channel
            # and callbacks per record. Resolves to the record's metadata once acknowledged.
            # Under exactly-once the stage's records go in their partition's transaction.
            try:
                if txns is not None and stage_partition is not None:
                    return await txns.send(stage_partition, topic, key=key, value=value, partition=partition,
                                           headers=headers)
                return await producer.send(topic, key, value, partition, None, headers)
            except Exception as exc:  # too large: ours, not retriable (streams.delivery)
                error = translate(exc)
                if error is exc:
                    raise
                raise error from exc

        self.send = send

        def tables_for(partition: int, event: Any) -> PartitionTables:
            return PartitionTables(dedupe=BoundMarks(tables.dedupe, event, held=exactly_once),
                                   review_states=BoundBundle(tables.review_states, event, held=exactly_once),
                                   latest=BoundTable(tables.latest, event),
                                   **{name: BatchedTable(getattr(tables, name), event)
                                      for name in BATCHED_TABLES})

        async def publish_tables(written: Sequence[PartitionTables]) -> list[asyncio.Future[Any]]:
            """Send the batch's changelog records; returns their deliveries."""
            deliveries = []
            for partition_tables in written:
                for name in (*BATCHED_TABLES, *HELD_TABLES) if exactly_once else BATCHED_TABLES:
                    deliveries += await getattr(partition_tables, name).publish(send)
            return deliveries

        async def commit_batch(partitions: set[int] | frozenset[int]) -> None:
            """Exactly-once: each partition's transaction, with the input offset it reached."""
            assert txns is not None
            consumer = app.consumer
            positions = {tp: consumer.take_position(tp) for tp in (TP(by_restaurant, p) for p in partitions)}
            offsets = {tp: offset for tp, offset in positions.items() if offset is not None}
            await txns.commit(partitions, {tp.partition: offset for tp, offset in offsets.items()})
            consumer.committed_in_transaction(offsets)

        outbox = Outbox([topics.aggregates.get_topic_name(), topics.restaurant_alerts.get_topic_name()],
                        scan=kafka_scanner(self._consumer_config()))
        self.core = StageCore(
            ports=Ports(tables_for=tables_for, send=send, dead_letter=self.dead_letters.send,
                        encode=self.codecs.encode, flush_producer=app.producer.flush,
                        publish_tables=publish_tables,
                        **({"commit_batch": commit_batch} if exactly_once else {}),
                        remember_critical=recent.remember_critical, remember_alert=recent.remember_alert),
            topics=OutputTopics(enriched=topics.enriched.get_topic_name(),
                                critical_alert=topics.critical_alert.get_topic_name(),
                                aggregates=topics.aggregates.get_topic_name(),
                                restaurant_alerts=topics.restaurant_alerts.get_topic_name(),
                                retry=topics.retry.get_topic_name()),
            settings=settings, outbox=outbox, enrich=self._enrich)
        app.before_wait_empty = self.core.abandon
        self.core.watch = app.health.watch
        # The first assignment may come before this service starts (_on_assigned then had no
        # budgets to share): without this the worker would enforce the whole group's budgets.
        self.share_budgets(app.consumer.assignment())
        self.core.start()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self._started.set()

    async def stop(self) -> None:
        if hasattr(self, "core"):
            await self.core.stop()
        if self.txns is not None:  # started by _on_assigned, maybe before start() ran
            await self.txns.stop()
        if hasattr(self, "llm"):
            await self.llm.client.aclose()
        if hasattr(self, "http"):
            await self.http.aclose()
        if hasattr(self, "codecs"):
            await self.codecs.stop()

    async def ready(self) -> None:
        await self._started.wait()

    async def _on_assigned(self, sender: Any, assigned: Any = None, **kwargs: Any) -> None:
        """Every assignment, from the worker's first (connected by :func:`install`, before this
        service starts). Exactly-once: the transactional producers follow the whole new
        assignment. They must see each one: a partition lost to another worker and got back
        later needs a new producer (the other worker's fenced the old one). Following from
        :meth:`start` missed the assignments before it, and a worker that lost partitions 0-1
        while it started kept their producers, fenced, and stopped at its first commit after
        taking them back (issue 29, 1 takeover run in 10)."""
        txns = self.txns
        if txns is not None:
            owned = self._stage_partitions(assigned)
            await txns.revoke(txns.partitions - owned)
            await txns.assign(owned)
        if not self._started.is_set():  # start() shares the budgets of the assignment it finds
            return
        self.core.outbox.reset()
        self.core.reset_due()
        self.share_budgets(assigned)

    async def _on_revoked(self, sender: Any, revoked: Any = None, **kwargs: Any) -> None:
        """Exactly-once: the batches under way commit before the partitions move (their next
        owner would fence them, and a fenced commit stops the worker)."""
        if self.txns is not None and self._started.is_set():
            await self.core.settled()

    @property
    def txns(self) -> StageTransactions | None:
        """The stage's transactions: exactly-once only (built with the app, streams.app)."""
        return getattr(self.app, "stage_transactions", None)

    def _stage_partitions(self, assigned: Any) -> set[int]:
        """The by-restaurant partitions of ``assigned``: the stage's share of the work."""
        topic = self.app.topics_.by_restaurant.get_topic_name()
        return {tp.partition for tp in assigned or () if tp.topic == topic}

    def share_budgets(self, assigned: Any) -> None:
        """Budgets are figures for the whole group: this worker enforces the share of the
        by-restaurant partitions it owns (``assigned`` is its whole new assignment)."""
        owned = len(self._stage_partitions(assigned))
        share = share_of(owned, self.app.settings.topic_partitions)
        self.llm.budgets.set_share(share)
        metrics.BUDGET_SHARE.set(share)
        self.llm.report_budgets()
        log_event("budget_share", owned=owned, partitions=self.app.settings.topic_partitions,
                  share=round(share, 4))

    def _budget_alert(self, alert: QuotaAlert) -> None:
        """A budget's WARNING or CRITICAL to ``budget.alerts``, sent beside the flow: a failed
        send is logged, never the enrichment's problem (the gauges and rules still see it)."""
        metrics.BUDGET_ALERTS.labels(alert.scope, alert.severity).inc()
        log_event("budget_alert", level=30, scope=alert.scope, budget=alert.name, severity=alert.severity,
                  used_tokens=alert.used_tokens, limit_tokens=alert.limit_tokens)
        record = alert.record(now_ms=int(time.time() * 1000))
        task = asyncio.ensure_future(self.send(self.app.topics_.budget_alerts.get_topic_name(),
                                               key=alert.name.encode(),
                                               value=self.codecs.encode("BudgetAlert", record)))
        task.add_done_callback(_log_send_failure)

    async def _enrich(self, jobs: Sequence[Job], spent: dict[str, int]) -> list[EnrichOutcome]:
        settings, llm = self.app.settings, self.llm
        outcomes = await enrich_batch(
            [enrich_request(job.item.record) for job in jobs],
            client=llm.client, cache=llm.cache, token_budget=llm.budget, quotas=llm.budgets,
            restaurant_spent_micro_usd=spent,
            restaurant_cap_micro_usd=settings.restaurant_daily_cost_cap_micro_usd,
            batch_size=settings.llm_batch_size, concurrency=1, reserve=True)
        llm.report_budgets()
        return outcomes

    def _consumer_config(self) -> dict[str, Any]:
        conf = self.app.conf
        return {"bootstrap_servers": self.app.settings.kafka_bootstrap_servers,
                **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context)}


def install(app: ReviewPulseApp) -> Runtime:
    """Create the runtime service (nothing built yet) and tie it to the worker's lifecycle."""
    runtime = Runtime(app)
    app.on_partitions_assigned.connect(runtime._on_assigned)
    app.on_partitions_revoked.connect(runtime._on_revoked)

    class RuntimeService(mode.Service):
        async def on_start(self) -> None:
            await runtime.start()

        async def on_stop(self) -> None:
            await runtime.stop()

    app.service(RuntimeService)
    return runtime


def _log_send_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log_event("budget_alert_send_failed", level=40, error=repr(task.exception()))
