"""Every touch of Faust's private API, in one module (an upgrade of Faust is checked here).

The app class, the transport, the "current event" that decides a table write's partition,
and the consumer's set of unacked messages. The transport has three changes:

1. Faust hard-codes ``fetch_max_wait_ms=1500`` in its driver. At low traffic every fetch
   then waits up to 1.5 s for data, which alone puts p50 end-to-end latency near 3 s
   (DESIGN §11: p50 2.9 s at 1,500 ms, 66 ms at 100 ms). We set aiokafka's attribute on
   the freshly built consumer, before it starts and builds its fetcher from it.
2. Tansu (the embedded broker) answers ListOffsets(latest) with the *base offset of the
   last record batch* + 1, not the log end: after a 10-record batch at offsets 33-42 it
   says 34 where Kafka says 43 (measured; the fetch response's high watermark is right).
   Faust restores tables by reading changelogs up to ListOffsets' answer, so a restarted
   worker would restore part of its state, or stop with a ConsistencyError. We take the
   larger of ListOffsets and the high watermark of one fetch at that offset: on Kafka the
   two agree and the fetch costs one round trip per recovery.
3. After recovery (and whenever a fetch returns while flow is stopped) Faust seeks the
   stream partitions to their committed offsets, and aiokafka leaves a partition without
   one where it is. But records fetched during recovery were dropped (their partitions
   were paused) and that position is past them: a worker killed before its first commit
   and restarted with changelogs to restore skipped every input record fetched while it
   restored (tests/integration/test_crash_enrichment.py, 6 of 6 runs). A stream partition
   without a committed offset is rewound to its beginning instead, as
   ``auto_offset_reset="earliest"`` promises; what it replays is deduplicated downstream.
9. The inputs are read ``read_committed`` (aiokafka's ``isolation_level``, which Faust sets
   only for its own exactly_once): an upstream service that produces in transactions and
   aborts one must not have the aborted records counted. Their commit and abort markers
   take offsets that hold no record, which point 5 already handles (a fetch starts past
   them). On Tansu, which has no transactions, it reads the same records.
10. A partition whose last offsets are transaction markers (or aborted records) never reads
   lag 0: the stage's last offset stays below the high watermark, so its windows would wait
   for the next record, and its commit would stay at the marker. When a partition's stage
   stalls short of the high watermark, :func:`holds_no_record` asks the broker (one
   read_committed fetch from a group-less consumer) whether the offsets between hold any
   record; when none, :meth:`Consumer.settle_empty` acks them and the stream expects the
   high watermark next (agents/ticks.py).

The consumer has two changes (points 4 and 5), both under Faust's ack lock (point 11).

4. Faust commits a partition up to the first gap in
its acked offsets, but it can commit past an offset that was never acked, at the head:

- its head check compares the lowest acked offset with the committed offset as if the
  latter were the last offset processed; Kafka's committed offset is the *next* one, so an
  unacked offset right at the committed position is skipped (committed 250, 250 owed,
  251 acked: Faust commits 252);
- with no committed offset known the check is skipped: on a partition never committed,
  and while a rebalance revokes partitions (Faust forgets their offsets first, then waits
  for the in-flight events, whose acks it commits);
- a gap of never-delivered offsets is recorded including the delivered offset after it,
  and after a seek one short (point 5).

The restaurant stage leaves a review's offset unacked until its enrichment is durable, so
with a slow LLM the head of a partition is often owed: a kill after such a commit lost the
review, and in a two-worker group every takeover could (the survivor's revoke committed
past the reviews it abandoned). :class:`Consumer` commits from the committed offset at
assignment, never past an unacked one (:func:`commit_position`), and commits nothing for a
partition being revoked.

5. Around a rebalance, records reach Faust's fetch loop but never its streams: a stream
   skips a message fetched in the previous generation, and the fetch loop drops a record
   below the partition's read offset, which a batch fetched before the seek to the
   committed offset has already moved past. In a two-worker takeover the survivor never
   handled 7 reviews in a row (by-restaurant 241-248, 1 run in 3) and Faust's gap
   bookkeeping then committed past them. :class:`Deliveries` follows the offsets each
   stream gets; when a stream misses some, the partition is sought back to the first one
   missed (and the fetch loop told not to drop it, :class:`_ReadOffsets`). What is fetched
   twice is deduplicated downstream. Offsets that hold no record (compaction, transaction
   markers) are found by the same fetch: it starts past them.

6. A Faust table sends one changelog record per key written. The dedupe table gets a key
   per event, so its changelog alone was one record per input record (in a0's profile, 5.6%
   of the worker's CPU went to writing marks). :class:`BoundMarks` writes a batch's marks
   to the local store one by one and to the changelog as *one* record;
   :class:`MarksTable` expands that record again wherever a changelog is applied
   (recovery, standby replicas).

7. A Faust table write goes through ``send_soon``: a FutureMessage, the producer buffer,
   ``Topic.publish_message`` and a callback that writes the partition's persisted offset to
   RocksDB, all per record. The stage writes a pane and a day's cost entry per restaurant
   per batch (1.1 records per event in a0, 2 in phase b), and that path was ~16% of a0's
   profile. :class:`BatchedTable` writes the local store at once and sends the batch's
   changelog records straight to the producer (:meth:`BatchedTable.publish`), each record's
   offset persisted once it is acknowledged, as Faust does: the same records, keys and
   partitions, so recovery and standbys read them as before.

8. A table read through Faust's layers costs 12 µs for a typical pane on RocksDB (the
   table's mapping, the store, the serializer registry, and a walk of every decoded value
   looking for Faust model markers), of which the database lookup and JSON decoding are
   ~3 µs (``python -m bench.table_access``). The stage reads and writes its tables a few
   times per event, and writes a mark per event. :class:`BoundTable` goes straight to
   the partition's RocksDB database, with the store's own JSON codec, when the store is
   the one Faust opens for a non-global JSON table (:func:`direct_db`); the bytes are the
   ones Faust writes and reads (tests/unit/streams/test_streams_direct_tables.py). Our
   values are plain JSON, never Faust models, so nothing is lost by not reconstructing
   them; Faust's table sensors (keys retrieved and updated) no longer count these calls.
   A batch's marks (:class:`BoundMarks`) and its panes, closures and daily costs
   (:meth:`BatchedTable.update`) go in one RocksDB write per table, not one write each.

11. Faust's ``Consumer.ack`` changes ``_acked``, ``_acked_index`` and ``_unacked_messages``
   under ``faust.types.tuples.ack_lock`` (a module-level ``RLock``: ``Event.ack`` may be called
   from another thread, which is public API). Every change this module makes to those
   structures (:meth:`Consumer.on_delivered`, :meth:`Consumer.settle_empty`,
   :meth:`Consumer._new_offset`, :func:`release`, the abandoning in
   ``ReviewPulseApp._consumer_wait_empty``) takes the same lock, so an ack from another thread
   can never land between our sort and trim of a partition's acked offsets (a lost ack there
   is a commit that stops, or one that passes an offset: silent, not a crash).

Upgrading Faust or aiokafka: both are pinned to the versions this was written against
(pyproject.toml). ``tests/unit/streams/test_faust_private_api.py`` records every private name
and overridden method used here, with its signature, and what the libraries' own code must
still do for each change above to take effect; it fails naming the one that moved. If the
new Faust no longer takes ``ack_lock`` in ``Consumer.ack``, find what guards the ack
bookkeeping now and take that here instead (point 11).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from functools import partial
from typing import Any, NamedTuple

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust import streams as faust_streams
from faust.serializers.codecs import get_codec
from faust.stores import rocksdb as faust_rocksdb
from faust.stores.base import SerializedStore
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from rocksdict import WriteBatch

from streams.kafka_offsets import fetched_highwaters
from streams.protocol import is_marks_key, marks_key

logger = logging.getLogger(__name__)


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # type: ignore[attr-defined]
        # Point 9: records of aborted upstream transactions never count. Faust reads
        # read_committed only under its own exactly_once.
        consumer._isolation_level = "read_committed"
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        listed = await super()._highwaters(partitions)
        if not listed or self.consumer.in_transaction or not self.app.tansu:
            return listed  # point 2 is Tansu's alone: Kafka's ListOffsets is the log end
        probe = self._create_client_consumer(self.transport)  # no group: never joins
        probe._fetch_max_wait_ms = 10
        await probe.start()
        try:
            return await fetched_highwaters(probe, listed)
        finally:
            await probe.stop()


    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        uncommitted = [tp for tp, offset in committed.items()
                       if not offset and not self.consumer._is_changelog_tp(tp)]
        if uncommitted:
            await self.call_thread(self._ensure_consumer().seek_to_beginning, *uncommitted)
        return committed


def commit_position(acked: list[int], head: int) -> tuple[int, int]:
    """Where a partition's commit may go: the first offset from ``head`` not in ``acked``.

    ``acked`` is sorted; ``head`` is the lowest offset whose outcome may still be owed.
    Returns (position, how many leading entries of ``acked`` it consumed): offsets below the
    position are done, and the position is what Kafka stores as committed (the next to read).
    """
    position, used = head, 0
    for offset in acked:
        if offset > position:
            break
        position = max(position, offset + 1)
        used += 1
    return position, used


class _Delivered(faust.Sensor):
    """Tells the consumer of every offset delivered to a stream (point 5).

    Streams inline Faust's message tracking and call only the sensors, so a sensor is how
    the consumer learns which offsets a stream actually got.
    """

    def __init__(self, consumer: Consumer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.consumer = consumer

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        self.consumer.on_delivered(tp, offset, message)


class Delivery(NamedTuple):
    """What one delivery tells: where to seek back to, offsets found to hold no record, and
    whether this record will be delivered again (in order, by the fetch from the seek)."""

    seek_to: int | None = None
    done: range = range(0)
    again: bool = False


NOTHING_TO_DO = Delivery()
COMES_AGAIN = Delivery(again=True)


class Deliveries:
    """What each partition's stream got since its assignment, and what it must fetch again.

    Pure bookkeeping (point 5), so it is unit-tested without a broker. ``heads`` holds the
    lowest offset possibly owed, ``refetch`` the offset a partition was sought back to until
    the records fetched from there arrive.
    """

    def __init__(self) -> None:
        self.heads: dict[TP, int] = {}
        self.refetch: dict[TP, int] = {}
        self._next: dict[TP, int] = {}  # the offset the stream should get next
        self._last: dict[TP, int] = {}  # the offset delivered last

    def forget(self, tp: TP) -> None:
        for known in (self.heads, self.refetch, self._next, self._last):
            known.pop(tp, None)

    def delivered(self, tp: TP, offset: int, *, committed: int | None) -> Delivery:
        """Note ``offset`` delivered to its stream, and say what follows from it.

        ``committed`` is the partition's committed offset, the first to expect after assignment.
        Records fetched before a seek keep arriving, in ascending order; the first one not above
        the one before it starts the fetch from the target. If that starts above the target, the
        offsets between hold no records (compaction, transaction markers). A missed record is
        found when a later one of its partition reaches the stream (on by-restaurant, a tick
        does within a tick interval); until then its offset holds the commit.
        """
        expected = self._next.get(tp)
        if expected is None:
            expected = offset if committed is None else min(committed, offset)
            self.heads[tp] = expected
        last = self._last.get(tp, offset)
        self._last[tp] = offset
        target = self.refetch.get(tp)
        if target is not None:
            if offset > last:  # still the records fetched before the seek
                return COMES_AGAIN
            del self.refetch[tp]  # the records fetched from the target have begun
            self._next[tp] = offset + 1
            return Delivery(done=range(target, offset))
        if offset > expected:  # the stream never got [expected, offset)
            self.refetch[tp] = expected
            return Delivery(seek_to=expected, again=True)
        self._next[tp] = max(expected, offset + 1)
        return NOTHING_TO_DO


class _ReadOffsets(defaultdict):  # type: ignore[type-arg]
    """Faust's read offsets: its fetch loop drops a record below its partition's entry.

    A partition being fetched again (point 5) reads as the offset it was sought back to
    while the records fetched before the seek go by, so the records asked for are not
    dropped as already read.
    """

    def __init__(self, refetch: Mapping[TP, int]) -> None:
        super().__init__(lambda: None)
        self.refetch = refetch

    def __getitem__(self, tp: TP) -> int | None:
        value: int | None = super().__getitem__(tp)
        target = self.refetch.get(tp)
        if target is not None and (value is None or value > target):
            return target
        return value


class Consumer(faust_aiokafka.Consumer):
    """Commits never pass an offset a stream did not ack, and offsets a stream never got are
    fetched again (points 4 and 5 above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deliveries = Deliveries()
        self._read_offset = _ReadOffsets(self.deliveries.refetch)
        # Records delivered while their partition is fetched again: they come again, in order.
        self.superseded: weakref.WeakSet[Any] = weakref.WeakSet()
        self.app.sensors.add(_Delivered(self))

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:  # unknown head: nothing is committed for them until reassigned
            self.deliveries.forget(tp)
        await super().on_partitions_revoked(revoked)

    def on_delivered(self, tp: TP, offset: int, message: Any) -> None:
        delivery = self.deliveries.delivered(tp, offset, committed=self._committed_offset.get(tp))
        if delivery.done:
            with ack_lock:  # point 11
                self._acked[tp].extend(delivery.done)
        if delivery.again:
            self.superseded.add(message)
        if delivery.seek_to is None:
            return
        logger.warning("The stream of %s:%d missed offsets %d-%d: fetching them again",
                       tp.topic, tp.partition, delivery.seek_to, offset - 1)
        try:
            self._thread.seek(tp, delivery.seek_to)
        except Exception as exc:  # revoked meanwhile: the next owner reads from the commit
            self.deliveries.refetch.pop(tp, None)
            logger.warning("Could not seek %s:%d back to %d: %r", tp.topic, tp.partition,
                           delivery.seek_to, exc)

    def settle_empty(self, tp: TP, start: int, end: int) -> bool:
        """Offsets ``[start, end)`` hold no record (point 10): ack them, so the commit passes
        them, and expect ``end`` next, so a record there is not taken for a miss. False, and
        nothing done, when the stream moved meanwhile (its own bookkeeping then applies)."""
        with ack_lock:  # point 11
            if self.deliveries.refetch.get(tp) is not None or self.deliveries._next.get(tp) != start:
                return False
            self._acked[tp].extend(range(start, end))
            self.deliveries._next[tp] = end
            return True

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's gaps are not recorded: off by one after a seek; point 5 finds real ones."""

    def _new_offset(self, tp: TP) -> int | None:
        with ack_lock:  # point 11: sorts and trims the lists an ack appends to
            head, acked = self.deliveries.heads.get(tp), self._acked[tp]
            if head is None or not acked:
                return None
            acked.sort()
            position, used = commit_position(acked, head)  # also drops acks below the head (stale)
            self._acked_index[tp].difference_update(acked[:used])
            del acked[:used]
            if position == head:
                return None
            self.deliveries.heads[tp] = position
            return position


async def without_superseded(stream: Any, events: list[Any]) -> list[Any]:
    """``events`` less those delivered while their partition is fetched again (point 5),
    which are released here: the fetch delivers them again, in order, after the records the
    stream missed. Handled now, they would move the input watermark past those records."""
    consumer = stream.app.consumer
    superseded = consumer.superseded
    if not superseded:
        return events
    kept = []
    for event in events:
        if event.message in superseded:
            release(consumer, event.message)
        else:
            kept.append(event)
    return kept


def release(consumer: Any, message: Any) -> None:
    """Let a superseded message go without its offset counting as done: Faust stops waiting
    for it (a rebalance waits for every unacked message), but its copy fetched again may be a
    review still owed, and an ack recorded now would let the commit pass that copy (issue 30,
    finding 2: the commit reached 251 while the copy of 249 was in enrichment). Under Faust's
    ``ack_lock``, as its own ``Consumer.ack`` changes the same sets."""
    with ack_lock:
        message.acked = True
        consumer._unacked_messages.discard(message)


async def handled_batches(stream: Any, max_events: int, *, within_s: float) -> AsyncIterator[list[Any]]:
    """``stream.noack_take`` batches without the records that come again (:func:`without_superseded`);
    a batch left empty is not yielded. The loop of every agent that acks its own events."""
    async for taken in stream.noack_take(max_events, within=within_s):
        if events := await without_superseded(stream, taken):
            yield events


EMPTY_PROBE_TIMEOUT_S = 2.0  # one fetch round trip; a broker slower than this is asked again later


async def holds_no_record(app: Any, tp: TP, *, start: int, end: int) -> bool | None:
    """Whether offsets ``[start, end)`` of ``tp`` hold no record a read_committed reader gets:
    only transaction markers and aborted records (point 10). None when unsure: the broker not
    answering is a reason to ask again later, never to stop the worker."""
    thread = app.consumer._thread
    probe = thread._create_client_consumer(thread.transport)  # no group: never joins
    probe._fetch_max_wait_ms = 10
    probe._isolation_level = "read_committed"
    try:
        await probe.start()
        return await _no_record_between(probe, tp, start=start, end=end)
    except KafkaError as exc:
        logger.info("Could not probe %s:%d for markers: %r", tp.topic, tp.partition, exc)
        return None
    finally:
        await probe.stop()


async def _no_record_between(probe: AIOKafkaConsumer, tp: TP, *, start: int, end: int) -> bool | None:
    target = TopicPartition(tp.topic, tp.partition)
    probe.assign([target])
    probe.seek(target, start)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EMPTY_PROBE_TIMEOUT_S
    while loop.time() < deadline:
        for messages in (await probe.getmany(target, timeout_ms=100, max_records=1)).values():
            if messages:
                return bool(messages[0].offset >= end)
        if await probe.position(target) >= end:  # the fetch skipped only markers and aborts
            return True
    return None


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


def last_fetched_ms(app: Any, tp: TP) -> int | None:
    """When a fetch response last gave ``tp``'s high watermark (epoch ms; aiokafka's
    ``last_poll_timestamp``); None before the first one or once ``tp`` is not assigned.
    A caught-up partition is fetched every fetch wait, so an old answer means the broker is
    not answering, and the high watermark known may be stale (agents/ticks.py)."""
    try:
        fetched: int | None = app.consumer._thread._ensure_consumer().last_poll_timestamp(tp)
    except Exception:  # not assigned, or the consumer is not started
        return None
    return fetched


def committed_offset(app: Any, tp: TP) -> int | None:
    """The committed offset (next to read) the consumer knows for ``tp``: the one it sought
    to at assignment or its last commit; None when the partition has none."""
    offset: int | None = app.consumer._committed_offset.get(tp)
    return offset


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


# --- the current event decides a table write's partition ----------------------------------
_CURRENT_EVENT = faust_streams._current_event
@contextmanager
def partition_of(event: Any) -> Iterator[None]:
    """Make ``event`` current, so table reads and writes go to its partition.

    Faust stores a table key in the RocksDB database, and sends its changelog record to the
    partition, *of the event being processed* (``current_event()``). A batch mixes
    partitions, and enrichment finishes outside any stream iteration, so before touching
    the state of restaurant R we make an event of R's partition current. Without it, state
    would be restored into the wrong partition after a rebalance.
    """
    token = _CURRENT_EVENT.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


_JSON = get_codec("json")  # what the serializer registry calls for a "json" table
_MISSING = object()  # what a store access returns for an absent key (a stored null is a value)


class _ThroughFaust:
    """A table's store through Faust's layers, with an event of the partition current."""

    def __init__(self, table: Any, ref: Any) -> None:
        self._table = table
        self._ref = ref

    def get(self, key: str) -> Any:
        token = _CURRENT_EVENT.set(self._ref)
        try:
            return self._table.get(key, _MISSING)
        finally:
            _CURRENT_EVENT.reset(token)

    def put(self, key: str, value: Any) -> tuple[bytes, bytes | None]:
        """Write the local store only (no changelog record); returns the encoded key and value."""
        store = self._table.data
        key_bytes, value_bytes = store._encode_key(key), store._encode_value(value)
        token = _CURRENT_EVENT.set(self._ref)  # the store picks the event's partition
        try:
            if isinstance(store, SerializedStore):  # RocksDB: the bytes encoded once
                store._set(key_bytes, value_bytes)
            else:
                store[key] = value
        finally:
            _CURRENT_EVENT.reset(token)
        return key_bytes, value_bytes

    def put_many(self, items: Mapping[str, Any]) -> list[tuple[bytes, bytes | None]]:
        return [self.put(key, value) for key, value in items.items()]


class DirectDB(NamedTuple):
    """A partition's RocksDB database of a table, with the store's index of key partitions:
    the accesses of :class:`_ThroughFaust` without Faust's layers (point 8)."""

    db: Any  # rocksdict.Rdict, raw mode
    key_index: MutableMapping[bytes, int]
    partition: int

    def get(self, key: str) -> Any:
        raw = self.db.get(_JSON.dumps(key))
        return _MISSING if raw is None else _JSON.loads(raw)

    def put(self, key: str, value: Any) -> tuple[bytes, bytes]:
        """What Faust's RocksDB store does in ``_set``, given the partition."""
        key_bytes, value_bytes = _JSON.dumps(key), _JSON.dumps(value)
        self.key_index[key_bytes] = self.partition
        self.db.put(key_bytes, value_bytes)
        return key_bytes, value_bytes

    def put_many(self, items: Mapping[str, Any]) -> list[tuple[bytes, bytes | None]]:
        """Every item in one RocksDB write (a batch's dedupe marks: ~0.7 µs a mark instead of
        ~4.3 µs with one write each, measured with 2,000 marks); returns the encoded pairs."""
        batch = WriteBatch(raw_mode=True)
        encoded: list[tuple[bytes, bytes | None]] = []
        for key, value in items.items():
            key_bytes, value_bytes = _JSON.dumps(key), _JSON.dumps(value)
            self.key_index[key_bytes] = self.partition
            batch.put(key_bytes, value_bytes)
            encoded.append((key_bytes, value_bytes))
        self.db.write(batch)
        return encoded


def direct_db(table: Any, partition: int) -> DirectDB | None:
    """The table's database for ``partition`` when reads and writes may skip Faust's layers
    (point 8): Faust's own RocksDB store of a non-global table with JSON keys and values and
    no value type. Otherwise None, and every access goes through Faust."""
    store = table.data
    if (type(store) is not faust_rocksdb.Store or not store.use_rocksdict
            or table.is_global or table.use_partitioner or store.value_type is not None
            or store.key_serializer != "json" or store.value_serializer != "json"):
        return None
    return DirectDB(store._db_for_partition(partition), store._key_index, partition)


class BoundTable(MutableMapping[str, Any]):
    """A Faust table seen from one partition: every access runs under :func:`partition_of`.

    Inlined (one context variable set and reset per access, the event's weak reference made
    once): the stage touches its tables a few times per event. Reads (and the subclasses'
    writes) go to the partition's RocksDB database directly where they can (point 8).
    """

    def __init__(self, table: Any, event: Any) -> None:
        self._table = table
        self._event = event
        self._ref = weakref.ref(event)
        self._store: _ThroughFaust | DirectDB = (
            direct_db(table, event.message.partition) or _ThroughFaust(table, self._ref))

    def __getitem__(self, key: str) -> Any:
        value = self._store.get(key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._store.get(key)
        return default if value is _MISSING else value

    def __setitem__(self, key: str, value: Any) -> None:
        token = _CURRENT_EVENT.set(self._ref)
        try:
            self._table[key] = value
        finally:
            _CURRENT_EVENT.reset(token)

    def __delitem__(self, key: str) -> None:
        token = _CURRENT_EVENT.set(self._ref)
        try:
            del self._table[key]
        finally:
            _CURRENT_EVENT.reset(token)

    def __contains__(self, key: object) -> bool:
        return self._store.get(key) is not _MISSING  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


# --- table writes: the store at once, the changelog once per batch (point 7) ----------------
Send = Callable[..., Any]  # streams.runtime.Runtime.send: (topic, *, key, value, partition) -> delivery


class BatchedTable(BoundTable):
    """A bound table whose changelog records are sent a batch at a time (point 7).

    A write goes to the local store at once, so every read after it sees it; its changelog
    record waits in ``_changes`` (the last write of a key wins, a delete is a tombstone)
    until :meth:`publish`. Only its writer may use it: nothing else knows to publish.
    """

    def __init__(self, table: Any, event: Any) -> None:
        super().__init__(table, event)
        self._changes: dict[bytes, bytes | None] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        key_bytes, value_bytes = self._store.put(key, value)
        self._changes[key_bytes] = value_bytes

    def update(self, items: Mapping[str, Any], /) -> None:  # type: ignore[override]
        """Every item in one store write (a batch's panes: one RocksDB write, not one each)."""
        if items:
            self._changes.update(self._store.put_many(items))

    def __delitem__(self, key: str) -> None:
        store = self._table.data
        token = _CURRENT_EVENT.set(self._ref)
        try:
            del store[key]
        finally:
            _CURRENT_EVENT.reset(token)
        self._changes[store._encode_key(key)] = None

    async def publish(self, send: Send) -> list[asyncio.Future[Any]]:
        """Send the changelog records written since the last call and return their deliveries;
        as each is acknowledged, the store remembers its offset (recovery reads from there)."""
        if not self._changes:
            return []
        changes, self._changes = self._changes, {}
        topic = self._table.changelog_topic.get_topic_name()
        partition = self._event.message.partition
        persisted = partial(self._persisted, TP(topic, partition))
        deliveries = []
        for key, value in changes.items():
            delivery = await send(topic, key=key, value=value, partition=partition)
            delivery.add_done_callback(persisted)
            deliveries.append(delivery)
        return deliveries

    def _persisted(self, tp: TP, delivery: asyncio.Future[Any]) -> None:
        """Per record, as Faust does: a batch's records span several produce requests, and a
        persisted offset held back until the last one is acknowledged made a kill -9 replay
        more of the changelog over newer local state (190-260 reviews enriched twice in
        test_crash_enrichment's kept case instead of ~70)."""
        if delivery.cancelled():
            return
        if (exc := delivery.exception()) is not None:  # as Faust's own callback: logged, not raised
            logger.error("Changelog record of %s not acknowledged: %r", tp, exc)
            return
        self._table.data.set_persisted_offset(tp, delivery.result().offset)


# --- the dedupe table: one changelog record per batch of marks (point 6) -------------------
class _Message(NamedTuple):
    """The fields of a changelog message that Faust's stores read when they apply it."""

    tp: TP
    offset: int
    partition: int
    key: bytes
    value: bytes


class _Change(NamedTuple):
    """One key of an expanded marks record, shaped like the changelog event a store applies
    (the RocksDB store reads ``message``'s raw bytes, the memory store ``key`` and ``value``)."""

    key: str
    value: Any
    message: _Message


def expand_marks(events: Iterable[Any], *, encode_key: Callable[[Any], bytes],
                 encode_value: Callable[[Any], bytes]) -> Iterator[Any]:
    """Changelog events with every marks record replaced by one change per mark it holds.

    Each change keeps the record's partition and offset, so the store's persisted offset
    moves as it would have. Other records (and per-key marks written before point 6) pass.
    """
    for event in events:
        value = event.value
        if not (is_marks_key(event.key) and isinstance(value, dict)):
            yield event
            continue
        message = event.message
        for event_id, mark in value.items():
            yield _Change(event_id, mark, _Message(message.tp, message.offset, message.partition,
                                                   encode_key(event_id), encode_value(mark)))


class MarksTable(faust.Table):
    """The dedupe table: applies marks records (:class:`BoundMarks`) key by key."""

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        store = self.data
        super().apply_changelog_batch(expand_marks(
            batch, encode_key=store._encode_key, encode_value=store._encode_value))


class BoundMarks(BoundTable):
    """The dedupe table seen from one partition, written a batch at a time (point 6).

    ``update`` puts every mark in the local store, without a changelog record each, and
    sends them all in one changelog record; reads are those of any bound table.
    """

    def update(self, marks: Mapping[str, int], /) -> None:  # type: ignore[override]
        if not marks:
            return
        table, message = self._table, self._event.message
        self._store.put_many(marks)
        token = _CURRENT_EVENT.set(self._ref)
        try:
            key = marks_key(message.partition, min(marks.values()), uuid.uuid4().hex[:12])
            table.send_changelog(message.partition, key, marks)
        finally:
            _CURRENT_EVENT.reset(token)
