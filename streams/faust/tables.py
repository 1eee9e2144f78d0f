"""Table reads and writes: the partition of a write, the store directly, the changelog
once per batch, one record per batch of dedupe marks (streams.faust, points 6-8)."""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from functools import partial
from typing import Any, NamedTuple

import faust
from faust import streams as faust_streams
from faust.serializers.codecs import get_codec
from faust.stores import rocksdb as faust_rocksdb
from faust.stores.base import SerializedStore
from faust.types import TP
from rocksdict import WriteBatch

from streams.protocol import is_marks_key, marks_key

logger = logging.getLogger(__name__)


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
SendRecord = Callable[..., Any]  # streams.runtime.Runtime.send: (topic, *, key, value, partition) -> delivery


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

    async def publish(self, send: SendRecord) -> list[asyncio.Future[Any]]:
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
            delivery = await send(topic, key=key, value=value, partition=partition, stage_partition=partition)
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
    sends them all in one changelog record; reads are those of any bound table. With
    ``held``, the record waits for :meth:`publish` instead (exactly-once: it must go in the
    batch's transaction, not through Faust's producer).
    """

    _persisted = BatchedTable._persisted  # each held record acknowledged moves the persisted offset

    def __init__(self, table: Any, event: Any, *, held: bool = False) -> None:
        super().__init__(table, event)
        self._held: list[tuple[str, dict[str, Any]]] | None = [] if held else None

    def update(self, marks: Mapping[str, Any], /) -> None:  # type: ignore[override]
        if not marks:
            return
        table, message = self._table, self._event.message
        self._store.put_many(marks)
        key = marks_key(message.partition, self._first_offset(marks), uuid.uuid4().hex[:12])
        if self._held is not None:
            self._held.append((key, dict(marks)))
            return
        token = _CURRENT_EVENT.set(self._ref)
        try:
            table.send_changelog(message.partition, key, marks)
        finally:
            _CURRENT_EVENT.reset(token)

    async def publish(self, send: SendRecord) -> list[asyncio.Future[Any]]:
        """Send the held records (see ``held``); their deliveries, as BatchedTable.publish."""
        if not self._held:
            return []
        held, self._held = self._held, []
        topic = self._table.changelog_topic.get_topic_name()
        partition = self._event.message.partition
        persisted = partial(self._persisted, TP(topic, partition))
        deliveries = []
        for key, value in held:
            delivery = await send(topic, key=_JSON.dumps(key), value=_JSON.dumps(value), partition=partition,
                                  stage_partition=partition)
            delivery.add_done_callback(persisted)
            deliveries.append(delivery)
        return deliveries

    def _first_offset(self, marks: Mapping[str, Any]) -> int:
        return int(min(marks.values()))


class BoundBundle(BoundMarks):
    """A table whose batch's writes travel in one changelog record, as the dedupe marks do
    (the review states: a record per review and state made a0 25 % slower, bench/HISTORY.md).
    Its table must be a :class:`MarksTable`, which applies such a record key by key."""

    # A state record is at most ~1.7 KB (ids of REVIEWPULSE_ID_MAX_CHARS, a reason, 8 steps):
    # 200 of them stay far below the producer's 1,000,000-byte request limit.
    MAX_ITEMS = 200

    def update(self, items: Mapping[str, Any], /) -> None:  # type: ignore[override]
        chunk: dict[str, Any] = {}
        for key, value in items.items():
            chunk[key] = value
            if len(chunk) == self.MAX_ITEMS:
                super().update(chunk)
                chunk = {}
        super().update(chunk)

    def _first_offset(self, marks: Mapping[str, Any]) -> int:
        return int(self._event.message.offset)  # the record's values are not offsets
