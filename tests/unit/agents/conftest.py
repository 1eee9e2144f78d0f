"""Fakes for the restaurant stage core: tables as dicts, recording senders, a scripted LLM.

No broker and no Faust: :class:`agents.stage.StageCore` receives every collaborator through
``Ports``, so these tests drive it with dicts and fakes. Every fake notifies the
:class:`World` when something happens, and tests wait on a condition over the fakes
(``await world.until(...)``), never on a sleep.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents.llm.labels import Enrichment
from agents.llm.outcome import EnrichOutcome, EnrichStatus
from agents.outbox import Outbox
from agents.stage import Job, OutputTopics, Ports, StageCore
from streams.protocol import ORDER, REVIEW, Item, Origin, Tick, pane_key, write_item, write_tick
from streams.settings import load_settings
from tables.state import PartitionTables
from tables.values import PaneAggregate

# Epoch ms aligned to every window of WINDOWS (5 s panes and tumbling, 20 s hopping).
BASE_MS = 1_700_000_000_000
# Small windows: tumbling [BASE, BASE + 5 s) closes once the watermark reaches BASE + 7 s.
WINDOWS: dict[str, Any] = {"window_size_s": 5, "hopping_size_s": 20, "hopping_step_s": 5,
                           "window_grace_s": 2}
BY_RESTAURANT = "reviewpulse-by-restaurant"
TOPICS = OutputTopics(enriched="reviews.enriched", critical_alert="alerts.critical",
                      aggregates="restaurant.aggregates", restaurant_alerts="restaurant.alerts",
                      retry="reviews.retry")
# Heuristic label of this text and rating: POSITIVE (score ~0.97), so an LLM answer of
# NEGATIVE shows in a pane whether the join happened.
HAPPY_TEXT = "Great food, delicious and hot. Loved it!"
WAIT_S = 5.0  # a generous bound for conditions that hold within milliseconds


@dataclass(frozen=True)
class Timeline:
    """Event times under WINDOWS: ``w0``, ``w1``... start consecutive tumbling windows (5 s)."""

    w0: int = BASE_MS
    w1: int = BASE_MS + 5_000
    w2: int = BASE_MS + 10_000
    w3: int = BASE_MS + 15_000

    @staticmethod
    def closing(window_start_ms: int) -> int:
        """The first watermark that closes the tumbling window starting there (end + grace)."""
        return window_start_ms + (WINDOWS["window_size_s"] + WINDOWS["window_grace_s"]) * 1_000


# --- tables ---------------------------------------------------------------------------------
class JsonTable(dict):
    """A dict that stores what a RocksDB-backed Faust table would give back: a JSON copy.

    A plain dict would hand the core back the very objects it wrote, hiding any aliasing
    between a cached value and the stored one.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, json.loads(json.dumps(value)))


def new_tables() -> PartitionTables:
    return PartitionTables(dedupe=JsonTable(), panes=JsonTable(), closures=JsonTable(),
                           daily_cost=JsonTable(), latest=JsonTable(), review_states=JsonTable())


# --- events ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: float | None = None

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass(eq=False)  # identity: the core tells events apart by id()
class FakeEvent:
    message: FakeMessage


def review_record(event_id: str, *, restaurant: str = "rest-1", occurred_ms: int = BASE_MS + 1_000,
                  text: str = HAPPY_TEXT, rating: int = 4, language: str | None = "en") -> dict[str, Any]:
    """A ``ReviewCreated`` record as decode validated it (timestamps in epoch ms)."""
    return {
        "event_id": event_id, "event_version": 1, "occurred_at": occurred_ms,
        "entity": {"review_id": f"rv-{event_id}", "order_id": f"ord-{event_id}", "user_id": "user-1",
                   "restaurant_id": restaurant, "rating": rating, "text": text, "language": language},
        "metadata": {"source": "unit-test", "trace_id": f"trace-{event_id}", "retries": 0},
    }


def order_record(event_id: str, *, restaurant: str = "rest-1", occurred_ms: int = BASE_MS + 2_000,
                 delay_ms: int = 90_000) -> dict[str, Any]:
    """An ``OrderDelivered`` record delivered at ``occurred_ms``, ``delay_ms`` after its promise."""
    return {
        "event_id": event_id, "occurred_at": occurred_ms, "order_id": f"ord-{event_id}",
        "restaurant_id": restaurant, "promised_at": occurred_ms - delay_ms, "delivered_at": occurred_ms,
        "metadata": {"source": "unit-test", "trace_id": f"trace-{event_id}", "retries": 0},
    }


class Feed:
    """Builds by-restaurant events at the next offset of their partition, like the topic would."""

    def __init__(self) -> None:
        self.next_offset: dict[int, int] = defaultdict(int)
        self._input_offset = 0

    def event(self, value: bytes | None, *, partition: int = 0, key: bytes | None = b"rest-1") -> FakeEvent:
        offset = self.next_offset[partition]
        self.next_offset[partition] += 1
        return FakeEvent(FakeMessage(BY_RESTAURANT, partition, offset, key, value,
                                     (("trace_id", b"trace"),)))

    def _item(self, kind: str, record: dict[str, Any], topic: str) -> Item:
        self._input_offset += 1
        origin = Origin(topic=topic, partition=0, offset=self._input_offset,
                        key=str(record["event_id"]).encode(), value=b"\x00\x00\x00\x00\x01avro",
                        headers=(("trace_id", record["metadata"]["trace_id"].encode()),))
        return Item(kind=kind, record=record, origin=origin)

    def review(self, event_id: str = "e1", *, partition: int = 0, **fields: Any) -> FakeEvent:
        record = review_record(event_id, **fields)
        return self.event(write_item(self._item(REVIEW, record, "reviews.created")), partition=partition,
                          key=record["entity"]["restaurant_id"].encode())

    def order(self, event_id: str = "o1", *, partition: int = 0, **fields: Any) -> FakeEvent:
        record = order_record(event_id, **fields)
        return self.event(write_item(self._item(ORDER, record, "orders.delivered")), partition=partition,
                          key=record["restaurant_id"].encode())

    def tick(self, watermark_ms: int, *, partition: int = 0, sender: str = "worker-1",
             sent_at_ms: int | None = None, input_partition: str = "reviews.created:0",
             input_partitions: int = 1) -> FakeEvent:
        """A tick: ``input_partition`` (of ``input_partitions`` of reviews.created) at ``watermark_ms``."""
        sent_at = watermark_ms if sent_at_ms is None else sent_at_ms
        tick = Tick(sender=sender, sent_at_ms=sent_at, marks={input_partition: watermark_ms},
                    partitions={"reviews.created": input_partitions})
        return self.event(write_tick(tick), partition=partition, key=b"~tick")

    def copy(self, event: FakeEvent) -> FakeEvent:
        """The same record at a new offset (decode forwarded it twice)."""
        message = event.message
        return self.event(message.value, partition=message.partition, key=message.key)

    @staticmethod
    def again(event: FakeEvent) -> FakeEvent:
        """The same message redelivered at its offset (a replay after a crash)."""
        return FakeEvent(event.message)


# --- the world the core talks to -------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    """What a producer's delivery future resolves to (aiokafka's RecordMetadata, abridged)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Sent:
    topic: str
    key: bytes
    value: bytes
    partition: int | None
    headers: list[tuple[str, bytes]]
    offset: int
    stage_partition: int | None = None  # the stage partition whose transaction it is in

    def json(self) -> dict[str, Any]:
        return json.loads(self.value)


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class World:
    """Tables per partition, and the fakes of every port; each change wakes the waiters."""

    def __init__(self) -> None:
        self.topics = TOPICS
        self.tables: dict[int, PartitionTables] = {}
        self.clock = Clock(BASE_MS + 1_500)
        self.sent: list[Sent] = []
        self.dead_letters: list[tuple[Origin, dict[str, Any]]] = []
        self.acked: list[FakeEvent] = []
        self.flushes = 0
        self.flush_error: Exception | None = None  # set to make the next flushes fail
        self.flush_gate: asyncio.Event | None = None  # set: a flush waits for it (a slow broker)
        self.published: list[list[PartitionTables]] = []  # the tables of each batch, as published
        self.history: list[str] = []  # "flush", "publish", "ack <offset>", "commit [p]", in order
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self._changed = asyncio.Event()

    # --- waiting ------------------------------------------------------------------------------
    def changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, predicate: Callable[[], Any]) -> None:
        """Return once ``predicate()`` holds; re-checked after every change of the fakes."""
        while True:
            changed = self._changed
            if predicate():
                return
            await changed.wait()

    async def until(self, predicate: Callable[[], Any], *, what: str, timeout_s: float = WAIT_S) -> None:
        try:
            await asyncio.wait_for(self.wait(predicate), timeout_s)
        except TimeoutError:
            raise AssertionError(f"{what}: not reached in {timeout_s} s") from None

    async def until_acked(self, *events: FakeEvent) -> None:
        await self.until(lambda: all(self.is_acked(e) for e in events),
                         what=f"ack of offsets {[e.message.offset for e in events]}")

    # --- ports --------------------------------------------------------------------------------
    def _delivered(self, topic: str, partition: int | None) -> asyncio.Future[Delivery]:
        where = (topic, 0 if partition is None else partition)
        offset = self._offsets[where]
        self._offsets[where] += 1
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        future.set_result(Delivery(where[0], where[1], offset))
        return future

    async def send(self, topic: str, *, key: bytes, value: bytes, partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None,
                   stage_partition: int | None = None) -> asyncio.Future[Delivery]:
        future = self._delivered(topic, partition)
        self.sent.append(Sent(topic, key, value, partition, list(headers or ()), future.result().offset,
                              stage_partition))
        self.changed()
        return future

    async def dead_letter(self, origin: Origin, **details: Any) -> asyncio.Future[Delivery]:
        self.dead_letters.append((origin, details))
        self.changed()
        return self._delivered("dlq", None)

    @staticmethod
    def encode(record_name: str, record: dict[str, Any]) -> bytes:
        return json.dumps({"record_name": record_name, **record}).encode()

    async def ack(self, event: FakeEvent) -> None:
        self.acked.append(event)
        self.history.append(f"ack {event.message.offset}")
        self.changed()

    async def flush_producer(self) -> None:
        if self.flush_gate is not None:
            await self.flush_gate.wait()
        self.flushes += 1
        self.history.append("flush")
        if self.flush_error is not None:
            raise self.flush_error

    async def publish_tables(self, written: list[PartitionTables]) -> list[asyncio.Future[Delivery]]:
        self.published.append(list(written))
        self.history.append("publish")
        self.changed()
        return []  # every send of the fakes is acknowledged at once

    async def commit_batch(self, partitions: set[int] | frozenset[int]) -> None:
        """Exactly-once's transaction commit of a batch's partitions (a no-op port otherwise)."""
        self.history.append(f"commit {sorted(partitions)}")
        self.changed()

    def tables_for(self, partition: int, event: Any) -> PartitionTables:
        if partition not in self.tables:
            self.tables[partition] = new_tables()
        return self.tables[partition]

    def ports(self) -> Ports:
        return Ports(tables_for=self.tables_for, send=self.send, dead_letter=self.dead_letter,
                     encode=self.encode, flush_producer=self.flush_producer,
                     publish_tables=self.publish_tables, clock_ms=self.clock,
                     commit_batch=self.commit_batch)

    # --- reading what happened ----------------------------------------------------------------
    def is_acked(self, event: FakeEvent) -> bool:
        return any(a is event for a in self.acked)

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]

    def aggregates(self, kind: str | None = None) -> list[dict[str, Any]]:
        records = [s.json() for s in self.on(TOPICS.aggregates)]
        return [r for r in records if kind is None or r["window_kind"] == kind]

    def aggregate(self, aggregate_id: str) -> dict[str, Any]:
        """The one aggregate sent with this id (fails when there are none or several)."""
        found = [r for r in self.aggregates() if r["aggregate_id"] == aggregate_id]
        assert len(found) == 1, f"{len(found)} aggregates {aggregate_id!r} sent: {found}"
        return found[0]

    def enriched(self, event_id: str | None = None) -> list[dict[str, Any]]:
        records = [s.json() for s in self.on(TOPICS.enriched)]
        return [r for r in records if event_id is None or r["event_id"] == event_id]

    def retries(self) -> list[Sent]:
        return self.on(TOPICS.retry)

    def pane(self, start_ms: int, *, restaurant: str = "rest-1", partition: int = 0) -> PaneAggregate:
        stored = self.tables[partition].panes.get(pane_key(restaurant, start_ms))
        assert stored is not None, f"no pane {restaurant}|{start_ms} in the table"
        return PaneAggregate.from_json(stored)


# --- the LLM ----------------------------------------------------------------------------------
def llm_outcome(job: Job, *, status: EnrichStatus = EnrichStatus.ENRICHED, label: str = "NEGATIVE",
                score: float = -0.6, categories: Iterable[str] = ("delivery_time",),
                cost_micro_usd: int = 30) -> EnrichOutcome:
    """What the LLM answered for ``job``: by default NEGATIVE where the heuristic said POSITIVE."""
    record = job.item.record
    if status is EnrichStatus.TRANSIENT_FAILURE:
        return EnrichOutcome(ref=job.item.event_id, restaurant_id=job.item.restaurant_id, status=status,
                             enrichment=None, model="fake-llm", prompt_version="test-v1",
                             error="LLM timed out", text=record["entity"]["text"])
    return EnrichOutcome(ref=job.item.event_id, restaurant_id=job.item.restaurant_id, status=status,
                         enrichment=Enrichment(label=label, score=score, categories=tuple(categories),
                                               reply_draft="We are sorry."),
                         model="fake-llm", prompt_version="test-v1", tokens_in=100, tokens_out=20,
                         cost_micro_usd=cost_micro_usd, latency_ms=250.0, text=record["entity"]["text"])


@dataclass
class FakeLLM:
    """The ``enrich`` coroutine, answering each (event_id, attempt) when the test says so.

    ``respond`` may come before or after the call; ``always`` answers every call at once.
    A call that has no answer waits for one, forever if the test never gives it.
    """

    world: World
    asked: list[tuple[str, int]] = field(default_factory=list)
    answers: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    default: dict[str, Any] | None = None

    def respond(self, event_id: str, *, attempt: int = 1, **outcome: Any) -> None:
        self.answers[(event_id, attempt)] = outcome
        self.world.changed()

    def always(self, **outcome: Any) -> None:
        self.default = outcome
        self.world.changed()

    def never(self) -> None:
        """From now on, a call without its own answer waits (the LLM went quiet)."""
        self.default = None

    def was_asked(self, event_id: str, attempt: int = 1) -> bool:
        return (event_id, attempt) in self.asked

    async def __call__(self, jobs: list[Job], spent: dict[str, int]) -> list[EnrichOutcome]:
        outcomes = []
        for job in jobs:
            key = (job.item.event_id, job.attempt)
            self.asked.append(key)
            self.world.changed()
            await self.world.wait(lambda key=key: key in self.answers or self.default is not None)
            outcomes.append(llm_outcome(job, **self.answers.get(key, self.default or {})))
        return outcomes


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def feed() -> Feed:
    return Feed()


@pytest.fixture
def llm(world: World) -> FakeLLM:
    return FakeLLM(world)


class DrivenStage(StageCore):
    """The stage as the restaurant agent drives it: each batch with its stream's ack, here
    the world's (``process(events)``), unless a test passes another."""

    def __init__(self, world: World, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.world = world

    async def process(self, events: Any, ack: Any = None) -> None:
        await super().process(events, ack or self.world.ack)


@pytest.fixture
async def make_stage(world: World, llm: FakeLLM) -> AsyncIterator[Callable[..., StageCore]]:
    """``make_stage(already_sent=(), **settings)``: a started core on the world's tables.

    Calling it again is a restart: a new core (new outbox, queue and watermark) on the same
    tables. Every core's enrichment workers are stopped at teardown.
    """
    cores: list[StageCore] = []

    def make(*, already_sent: Iterable[str] = (), **overrides: Any) -> StageCore:
        ids = set(already_sent)

        async def scan(partition: int, starts: Any) -> tuple[set[str], dict[str, int]]:
            return ids, {}

        settings = load_settings(**{**WINDOWS, **overrides})
        core = DrivenStage(world, ports=world.ports(), topics=TOPICS, settings=settings,
                           outbox=Outbox([TOPICS.aggregates, TOPICS.restaurant_alerts], scan=scan),
                           enrich=llm)
        core.start()
        cores.append(core)
        return core

    yield make
    for core in cores:
        await core.stop()


@pytest.fixture
def t() -> Timeline:
    return Timeline()
