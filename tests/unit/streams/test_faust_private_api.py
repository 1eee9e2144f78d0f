"""The private API of Faust and aiokafka that streams/faust/ relies on, recorded.

The shim overrides private methods, reads and writes private attributes and replaces private
structures (points 1-11 of its docstring). An upgrade that renames one, changes a signature,
or stops using what we set would not crash: it would silently drop a change, and some of
those changes are what keeps a commit from passing an unacked review (a lost review, not an
error). So this canary records each name, the signature of each method we override or call
(parameter names, kinds and defaults: annotations are left out, they change with typing's
repr), and the lines of the libraries' own code that make our change take effect. A failure
names what moved and what depends on it; the shim's docstring says what to do on upgrade.

faust-streaming and aiokafka are pinned to the versions recorded here (pyproject.toml).
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import weakref
from collections import defaultdict
from typing import Any

import pytest

from streams.faust import app as shim_app
from streams.faust import commits as shim_commits
from streams.faust import transport as shim_transport

FAUST = "faust.transport.drivers.aiokafka"

# (module, dotted attribute): signature without annotations, and what relies on it.
SIGNATURES: dict[tuple[str, str], tuple[str, str]] = {
    # overridden
    (FAUST, "AIOKafkaConsumerThread._create_worker_consumer"): (
        "(self, transport)", "ConsumerThread sets _fetch_max_wait_ms and _isolation_level (points 1, 9)"),
    (FAUST, "AIOKafkaConsumerThread._highwaters"): (
        "(self, partitions)", "ConsumerThread probes Tansu's high watermarks (point 2) and changelog ends "
                              "under exactly-once (point 12)"),
    (FAUST, "AIOKafkaConsumerThread.seek_to_committed"): (
        "(self)", "ConsumerThread rewinds partitions without a commit (point 3)"),
    (FAUST, "AIOKafkaConsumerThread._fetch_records"): (
        "(self, consumer, active_partitions, timeout=None, max_records=None)",
        "ConsumerThread reports the first offset fetched after a point-5 seek"),
    (FAUST, "Consumer._new_consumer_thread"): ("(self)", "Consumer builds our ConsumerThread"),
    (FAUST, "Consumer.on_partitions_revoked"): (
        "(self, revoked)", "Consumer forgets revoked heads (point 4)"),
    (FAUST, "Consumer._add_gap"): (
        "(self, tp, offset_from, offset_to)", "Consumer records no gaps (points 4, 5)"),
    (FAUST, "Consumer._new_offset"): ("(self, tp)", "Consumer's commit position (point 4)"),
    ("faust", "App._new_transport"): ("(self)", "ReviewPulseApp installs our Transport"),
    ("faust", "App._new_producer"): ("(self)", "ReviewPulseApp's changelog buffer bound"),
    ("faust", "App._consumer_wait_empty"): (
        "(self, consumer, logger)", "ReviewPulseApp abandons queued enrichments before a rebalance waits"),
    ("faust", "App.on_first_start"): ("(self)", "ReviewPulseApp ensures topics before the consumer starts"),
    ("faust", "Table.apply_changelog_batch"): ("(self, batch)", "MarksTable expands marks records (point 6)"),
    ("faust", "Sensor.on_message_in"): (
        "(self, tp, offset, message)", "_Delivered sees every delivery (point 5)"),
    # called
    (FAUST, "AIOKafkaConsumerThread._create_client_consumer"): (
        "(self, transport)", "the group-less probes of points 2 and 10"),
    (FAUST, "AIOKafkaConsumerThread._ensure_consumer"): (
        "(self)", "seek_to_committed, last_fetched_ms"),
    (FAUST, "AIOKafkaConsumerThread.seek"): (
        "(self, partition, offset)", "seek_on_thread: Consumer.on_delivered seeks back (point 5)"),
    (FAUST, "AIOKafkaConsumerThread.call_thread"): (
        "(self, fun, *args, **kwargs)", "ConsumerThread.seek_to_committed"),
    (FAUST, "Consumer._is_changelog_tp"): ("(self, tp)", "ConsumerThread.seek_to_committed"),
    ("faust", "Table.send_changelog"): (
        "(self, partition, key, value, key_serializer=None, value_serializer=None)", "BoundMarks.update"),
    ("faust.stores.rocksdb", "Store._encode_key"): ("(self, key)", "BatchedTable, MarksTable, _ThroughFaust"),
    ("faust.stores.rocksdb", "Store._encode_value"): ("(self, value)", "MarksTable, _ThroughFaust"),
    ("faust.stores.rocksdb", "Store._set"): ("(self, key, value)", "_ThroughFaust.put"),
    ("faust.stores.rocksdb", "Store._db_for_partition"): ("(self, partition)", "direct_db (point 8)"),
    ("faust.stores.rocksdb", "Store.set_persisted_offset"): ("(self, tp, offset)", "BatchedTable._persisted"),
    ("faust.streams", "Stream.noack_take"): ("(self, max_, within)", "handled_batches"),
    ("aiokafka", "AIOKafkaConsumer.last_poll_timestamp"): ("(self, partition)", "last_fetched_ms"),
    ("aiokafka", "AIOKafkaConsumer.highwater"): ("(self, partition)", "fetched_highwaters"),
    ("aiokafka", "AIOKafkaConsumer.last_stable_offset"): ("(self, partition)", "_after_last_record (pt. 12)"),
    ("aiokafka", "AIOKafkaConsumer.position"): ("(self, partition)", "_after_last_record (point 12)"),
    ("aiokafka", "AIOKafkaProducer.send_offsets_to_transaction"): (
        "(self, offsets, group_id)", "StageTransactions.commit (exactly-once)"),
    ("aiokafka", "AIOKafkaConsumer.getmany"): (
        "(self, *partitions, timeout_ms=0, max_records=None)", "fetched_highwaters, holds_no_record"),
}

# (module, dotted attribute, a line of its source): what must stay true for a change of ours
# to take effect, and which one.
SOURCE_FACTS: list[tuple[str, str, str, str]] = [
    ("aiokafka", "AIOKafkaConsumer.__init__", "self._fetch_max_wait_ms = fetch_max_wait_ms",
     "point 1 writes _fetch_max_wait_ms on the built consumer"),
    ("aiokafka", "AIOKafkaConsumer.start", "fetch_max_wait_ms=self._fetch_max_wait_ms",
     "point 1: the fetcher, built at start, reads the attribute we set"),
    ("aiokafka", "AIOKafkaConsumer.__init__", "self._isolation_level = isolation_level",
     "point 9 writes _isolation_level on the built consumer"),
    ("aiokafka", "AIOKafkaConsumer.start", "isolation_level=self._isolation_level",
     "point 9: the fetcher, built at start, reads the attribute we set"),
    (FAUST, "AIOKafkaConsumerThread.on_start", "self._consumer = self._create_consumer(",
     "points 1, 9: the consumer is built, then started, so attributes set in between count"),
    (FAUST, "AIOKafkaConsumerThread._create_consumer", "self._create_worker_consumer(transport)",
     "points 1, 9: a worker builds its consumer through the method we override"),
    ("faust.transport.consumer", "Consumer._drain_messages", "self._read_offset.__getitem__",
     "point 5: the fetch loop drops records by the _read_offset we replace with _ReadOffsets"),
    (FAUST, "AIOKafkaConsumerThread.getmany", "self._fetch_records,",
     "point 5: every fetch goes through the _fetch_records we override (the first offset after a seek)"),
    ("aiokafka.consumer.fetcher", "Fetcher.seek_to", "del self._records[tp]",
     "point 5: a seek drops the partition's fetched records, so the next ones start at the target"),
    ("faust.transport.consumer", "Consumer._drain_messages", "await self._add_gap(tp,",
     "points 4, 5: the gaps we refuse to record come through _add_gap"),
    ("faust.tables.recovery", "Recovery._build_highwaters", "highwaters = await consumer.highwaters(*tps)",
     "point 12: recovery reads each changelog up to what the _highwaters we override answers"),
    ("faust.transport.consumer", "Consumer._filter_committable_offsets", "self._new_offset(tp)",
     "point 4: every commit position comes from the _new_offset we override"),
    ("faust.transport.consumer", "Consumer.ack", "self._acked_index[tp]",
     "point 4: acks land in _acked_index, which _new_offset trims"),
    ("faust.transport.consumer", "Consumer.ack", "self._acked[tp]",
     "point 4: acks land in _acked, which _new_offset sorts and trims"),
    ("faust.transport.consumer", "Consumer.ack", "self._unacked_messages.discard(message)",
     "release() and the abandoning drop messages from _unacked_messages as an ack does"),
    ("faust.transport.consumer", "Consumer.__init__", "self._acked = defaultdict(list)",
     "Consumer.on_delivered and settle_empty extend _acked[tp] without creating it"),
    ("faust", "App._on_partitions_revoked", "await T(self._consumer_wait_empty)(consumer, on_timeout)",
     "a rebalance waits through the _consumer_wait_empty we override"),
    ("faust", "App._stop_consumer", "await self._consumer_wait_empty(consumer, self.log)",
     "a stop waits through the _consumer_wait_empty we override"),
    ("faust.stores.rocksdb", "Store._set", "self._key_index[key] = partition",
     "point 8: DirectDB.put does what _set does, key index included"),
    ("faust.stores.rocksdb", "Store._get", "db = self._db_for_partition(partition)",
     "point 8: a non-global table reads its event's partition database, as DirectDB does"),
    ("faust.streams", "current_event", "_current_event.get(None)",
     "partition_of and the bound tables set _current_event to pick a write's partition"),
    ("faust.transport.producer", "ProducerBuffer.wait_until_ebb", "if self.size > self.max_messages:",
     "ReviewPulseApp._new_producer raises buffer.max_messages"),
]


def resolve(module: str, dotted: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in dotted.split("."):
        target = getattr(target, part)
    return target


def bare(signature: inspect.Signature) -> str:
    """The signature without annotations: names, kinds and defaults."""
    parameters = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty))


@pytest.mark.parametrize(("module", "dotted", "signature", "used_by"),
                         [(*where, *recorded) for where, recorded in SIGNATURES.items()],
                         ids=[f"{m}:{d}" for m, d in SIGNATURES])
def test_every_private_method_we_override_or_call_keeps_its_signature(
        module, dotted, signature, used_by) -> None:
    try:
        target = resolve(module, dotted)
    except AttributeError:
        pytest.fail(f"{module}.{dotted} is gone; used by {used_by} (streams/faust/)")
    assert bare(inspect.signature(target)) == signature, (
        f"{module}.{dotted} changed its signature; used by {used_by} (streams/faust/)")


@pytest.mark.parametrize(("module", "dotted", "line", "why"), SOURCE_FACTS,
                         ids=[f"{m}:{d}" for m, d, _, _ in SOURCE_FACTS])
def test_the_libraries_still_use_what_the_shim_changes(module, dotted, line, why) -> None:
    source = inspect.getsource(resolve(module, dotted))
    assert line in source, f"{module}.{dotted} no longer has `{line}`: {why} (streams/faust/)"


def test_faust_acks_under_the_module_lock_the_shim_takes() -> None:
    """Recorded fact: the installed Faust's ``Consumer.ack`` takes ``faust.types.tuples.ack_lock``
    (Faust's main branch wraps it since 0.15), a re-entrant lock, and the shim takes the same
    object (point 11). If this fails after an upgrade, see the shim's docstring."""
    from faust.transport import consumer as faust_consumer
    from faust.types import tuples

    assert "with ack_lock:" in inspect.getsource(faust_consumer.Consumer.ack), (
        "faust's Consumer.ack no longer takes ack_lock: find what guards _acked/_acked_index now "
        "and take it in streams/faust/ (point 11)")
    assert faust_consumer.ack_lock is tuples.ack_lock is shim_commits.ack_lock
    assert type(tuples.ack_lock).__name__ == "RLock", "the shim re-enters ack_lock: it must be re-entrant"


def test_the_module_level_names_the_shim_uses_exist() -> None:
    import faust
    from faust import streams as faust_streams
    from faust.serializers import codecs
    from faust.stores import base, rocksdb
    from faust.transport import producer

    assert isinstance(faust_streams._current_event, contextvars.ContextVar)
    assert callable(codecs.get_codec)
    assert issubclass(rocksdb.Store, base.SerializedStore)
    assert isinstance(producer.ProducerBuffer.max_messages, int)
    for name in ("App", "Table", "Sensor"):
        assert isinstance(getattr(faust, name), type), f"faust.{name}"


@pytest.fixture
async def consumer():
    app = shim_app.ReviewPulseApp("canary", broker="kafka://127.0.0.1:1")
    yield app.consumer
    app.consumer._thread.thread_loop.close()  # built with the consumer, never started


async def test_the_consumer_has_the_private_structures_the_shim_reads_and_writes(consumer) -> None:
    assert isinstance(consumer._acked, defaultdict) and consumer._acked.default_factory is list
    assert isinstance(consumer._acked_index, defaultdict) and consumer._acked_index.default_factory is set
    assert isinstance(consumer._committed_offset, dict)
    assert isinstance(consumer._unacked_messages, weakref.WeakSet)  # release() discards from it
    assert isinstance(consumer._read_offset, shim_commits._ReadOffsets), "point 5's replacement took"
    assert isinstance(consumer._thread, shim_transport.ConsumerThread)
    assert consumer._thread.consumer is consumer
    assert consumer._thread.transport is not None
    # seek_on_thread runs the seek on the consumer thread's own loop (aiokafka is not thread-safe)
    assert consumer._thread.thread_loop is not consumer.loop
    assert consumer.in_transaction is False
    assert consumer.app.producer.buffer.max_messages == shim_app.PRODUCER_BUFFER_MAX_MESSAGES
