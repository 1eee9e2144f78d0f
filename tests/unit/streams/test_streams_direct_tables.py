"""The stage's RocksDB tables are read and written straight through the partition's database
(streams/faust/, point 8).

The direct path must be invisible: what it writes, Faust reads back (and recovery, standbys
and the web view read Faust's way), byte for byte; what Faust wrote, it reads; a missing key
and a stored null stay different. These drive Faust's own RocksDB store without a broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.faust.tables import BatchedTable, BoundMarks, BoundTable, direct_db, partition_of
from tests.unit.streams.test_streams_batched_table import PARTITION, by_restaurant_event, make_app

keys = st.text(min_size=1, max_size=30)
# What the stage stores: JSON objects, lists, numbers, text, booleans and null.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    app = make_app("rocksdb", tmp_path_factory.mktemp("direct"))
    yield app
    app.consumer._thread.thread_loop.close()  # built with the consumer, never started


@pytest.fixture(scope="module")
def table(app: Any) -> Any:
    return app.Table("panes", default=None, key_type=str, partitions=4)


def faust_get(table: Any, event: Any, key: str) -> Any:
    """A read the way Faust does it (the table's mapping, with the event current)."""
    with partition_of(event):
        return table.get(key, "<missing>")


def faust_set(table: Any, event: Any, key: str, value: Any) -> None:
    with partition_of(event):
        table.data[key] = value  # the store, as Faust's table writes it (no changelog here)


def test_the_direct_path_is_taken_for_rocksdb_json_tables_only(app: Any, table: Any) -> None:
    assert direct_db(table, PARTITION) is not None
    latest = app.GlobalTable("latest-direct", default=None, key_type=str, partitions=4)
    assert direct_db(latest, PARTITION) is None  # a global table reads every partition
    memory = make_app("memory", Path(app.conf.datadir) / "mem")
    try:
        assert direct_db(memory.Table("panes", default=None, key_type=str, partitions=4), PARTITION) is None
    finally:
        memory.consumer._thread.thread_loop.close()


@settings(max_examples=200, deadline=None)
@given(key=keys, value=json_values)
def test_what_the_direct_path_writes_faust_reads_with_the_same_bytes(
        table: Any, key: str, value: Any) -> None:
    event = by_restaurant_event(table.app)
    bound = BatchedTable(table, event)
    bound[key] = value
    store = table.data
    db = store._db_for_partition(PARTITION)
    assert db.get(store._encode_key(key)) == store._encode_value(value)
    assert faust_get(table, event, key) == value
    assert bound._changes[store._encode_key(key)] == store._encode_value(value)  # the changelog's bytes


@settings(max_examples=200, deadline=None)
@given(key=keys, value=json_values)
def test_what_faust_wrote_the_direct_path_reads(table: Any, key: str, value: Any) -> None:
    event = by_restaurant_event(table.app)
    faust_set(table, event, key, value)
    bound = BoundTable(table, event)
    assert bound.get(key, "<missing>") == value
    assert bound[key] == value
    assert key in bound


def test_a_missing_key_is_not_a_stored_null(table: Any) -> None:
    event = by_restaurant_event(table.app)
    bound = BatchedTable(table, event)
    assert bound.get("never-written", "<missing>") == "<missing>"
    assert "never-written" not in bound
    with pytest.raises(KeyError):
        bound["never-written"]
    bound["null"] = None
    assert bound.get("null", "<missing>") is None
    assert "null" in bound
    assert faust_get(table, event, "null") is None
    del bound["null"]
    assert faust_get(table, event, "null") == "<missing>"
    assert bound.get("null", "<missing>") == "<missing>"


def test_a_key_lives_in_its_partition_only(table: Any) -> None:
    """The partition is the bound event's: another partition's database never sees the key."""
    event = by_restaurant_event(table.app)
    BatchedTable(table, event)["r-only-here"] = {"n": 1}
    store = table.data
    other = store._db_for_partition(PARTITION + 1)
    assert other.get(store._encode_key("r-only-here")) is None
    assert store._key_index[store._encode_key("r-only-here")] == PARTITION


def test_marks_written_directly_are_read_by_faust(app: Any) -> None:
    from streams.faust.tables import MarksTable

    marks = app.tables.add(MarksTable(app, name="dedupe-direct", default=None, key_type=str, partitions=4,
                                      beacon=app.tables.beacon))
    event = by_restaurant_event(app)
    bound = BoundMarks(marks, event)
    sent: list[tuple[int, Any, Any]] = []
    marks.send_changelog = lambda partition, key, value, **kw: sent.append((partition, key, value))
    bound.update({"ev-1": 7, "ev-2": 8})
    assert [faust_get(marks, event, k) for k in ("ev-1", "ev-2", "ev-3")] == [7, 8, "<missing>"]
    assert [(partition, value) for partition, _, value in sent] == [(PARTITION, {"ev-1": 7, "ev-2": 8})]


@settings(max_examples=100, deadline=None)
@given(items=st.dictionaries(keys, json_values, max_size=12),
       then=st.dictionaries(keys, json_values, max_size=6))
def test_a_batch_of_writes_in_one_store_write_is_the_same_as_one_write_each(
        table: Any, items: dict[str, Any], then: dict[str, Any]) -> None:
    """``update`` (a batch's panes, closures and daily costs) stores and queues for the
    changelog what a write per item would: the same bytes, the last write of a key winning."""
    event = by_restaurant_event(table.app)
    batched, one_by_one = BatchedTable(table, event), BatchedTable(table, event)
    batched.update(items)
    batched.update(then)
    expected = {**items, **then}
    for key, value in expected.items():
        one_by_one[key] = value
    store = table.data
    db = store._db_for_partition(PARTITION)
    for key, value in expected.items():
        assert db.get(store._encode_key(key)) == store._encode_value(value)
        assert faust_get(table, event, key) == value
        assert store._key_index[store._encode_key(key)] == PARTITION
    assert batched._changes == one_by_one._changes
