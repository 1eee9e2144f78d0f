"""A batch's dedupe marks travel in one changelog record and come back key by key
(streams/faust/, point 6).

A mark lost at recovery lets a copy of a review at a new offset (a re-forward after a decode
crash, a producer's retry) be counted twice. These drive the real Faust table class and its
stores (memory and RocksDB) with the changelog records it writes, without a broker.
"""

from __future__ import annotations

import json
from pathlib import Path

import faust
import pytest
from faust.types import TP
from faust.types.tuples import Message
from hypothesis import given
from hypothesis import strategies as st

from streams.faust.app import ReviewPulseApp
from streams.faust.tables import BoundBundle, BoundMarks, MarksTable, expand_marks
from streams.protocol import is_marks_key, marks_key

CHANGELOG = "marks-test-dedupe-changelog"


def encode(value: object) -> bytes:
    return json.dumps(value).encode()


def changelog_event(app: faust.App, partition: int, offset: int, key: str, value: object) -> faust.Event:
    """A changelog record as Faust's recovery hands it to a table: key and value decoded."""
    message = Message(CHANGELOG, partition, offset, 0.0, 0, {}, encode(key), encode(value), None,
                      tp=TP(CHANGELOG, partition))
    return faust.Event(app, key, value, {}, message)


class Record:
    """A decoded changelog record, for the pure function (it reads these fields only)."""

    def __init__(self, partition: int, offset: int, key: str, value: object) -> None:
        self.key, self.value = key, value
        self.message = Message(CHANGELOG, partition, offset, 0.0, 0, {}, encode(key), encode(value), None,
                               tp=TP(CHANGELOG, partition))


batches = st.lists(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 10**6), max_size=6),
                   max_size=6)


@given(batches=batches, partition=st.integers(0, 7))
def test_expanded_marks_are_the_marks_written_each_at_its_record_offset(batches, partition) -> None:
    records, expected = [], {}
    for offset, marks in enumerate(batches):
        records.append(Record(partition, offset, marks_key(partition, offset, f"n{offset}"), marks))
        expected.update(marks)
    records.append(Record(partition, len(batches), "pane|1", {"reviews": 1}))  # another table's kind of key

    changes = list(expand_marks(records, encode_key=encode, encode_value=encode))

    applied = {change.key: change.value for change in changes}
    assert applied == {**expected, "pane|1": {"reviews": 1}}
    # No marks record survives. An event id may itself begin with the marks prefix (hypothesis
    # draws "~marks:" from streams.protocol): it is a mark like any other, a number, never a dict.
    assert not any(is_marks_key(change.key) and isinstance(change.value, dict) for change in changes)
    for change in changes:
        assert change.message.key == encode(change.key) and change.message.value == encode(change.value)
        assert change.message.partition == partition
    offsets = [change.message.offset for change in changes]
    assert offsets == sorted(offsets)  # the persisted offset never moves back


def test_a_mark_written_per_key_before_point_6_passes_unchanged() -> None:
    old = Record(0, 3, "~marks:looks-like-a-batch", 17)  # an event id; its value is an offset
    assert list(expand_marks([old], encode_key=encode, encode_value=encode)) == [old]


@pytest.fixture(params=["memory", "rocksdb"])
def marks_table(request, tmp_path: Path):
    if request.param == "rocksdb":
        pytest.importorskip("rocksdict")
    app = ReviewPulseApp("marks-test", broker="kafka://127.0.0.1:1", store=f"{request.param}://",
                         datadir=str(tmp_path))
    table = app.tables.add(MarksTable(app, name="dedupe", default=None, key_type=str, partitions=4,
                                      beacon=app.tables.beacon))
    yield app, table
    app.consumer._thread.thread_loop.close()  # built with the consumer, never started


def test_recovery_restores_every_mark_of_a_marks_record(marks_table) -> None:
    app, table = marks_table
    table.apply_changelog_batch([
        changelog_event(app, 2, 40, marks_key(2, 100, "a"), {"ev-1": 100, "ev-2": 101}),
        changelog_event(app, 2, 41, "ev-0", 99),  # a per-key mark from before point 6
        changelog_event(app, 2, 42, marks_key(2, 102, "b"), {"ev-3": 102}),
    ])

    assert {key: table.data.get(key) for key in ("ev-0", "ev-1", "ev-2", "ev-3")} == {
        "ev-0": 99, "ev-1": 100, "ev-2": 101, "ev-3": 102}
    assert table.data.get(marks_key(2, 100, "a")) is None
    if app.conf.store.scheme == "rocksdb":
        assert table.data.persisted_offset(TP(CHANGELOG, 2)) == 42


def test_a_batch_of_marks_is_one_changelog_record_and_every_mark_is_readable(marks_table) -> None:
    app, table = marks_table
    sent = []
    table.send_changelog = lambda partition, key, value: sent.append((partition, key, value))
    event = changelog_event(app, 1, 7, "by-restaurant-record", None)  # the event whose partition it is

    BoundMarks(table, event).update({"ev-1": 7, "ev-2": 8, "ev-3": 9})

    assert [(partition, is_marks_key(key), value) for partition, key, value in sent] == [
        (1, True, {"ev-1": 7, "ev-2": 8, "ev-3": 9})]
    bound = BoundMarks(table, event)
    assert [bound.get(key) for key in ("ev-1", "ev-2", "ev-3", "ev-4")] == [7, 8, 9, None]


def test_a_batch_of_review_states_travels_in_records_of_at_most_200_and_comes_back_key_by_key(
        marks_table) -> None:
    """The review states' table (streams.faust.BoundBundle): 450 states in one batch are three
    changelog records, each well under a produce request; recovery restores every state."""
    app, table = marks_table
    sent = []
    table.send_changelog = lambda partition, key, value: sent.append((partition, key, value))
    event = changelog_event(app, 3, 11, "by-restaurant-record", None)
    states = {f"4:rest|rv-{i}": {"state": "PENDING", "history": [{"state": "PENDING"}]} for i in range(450)}

    BoundBundle(table, event).update(states)

    assert [len(value) for _, _, value in sent] == [200, 200, 50]
    assert all(partition == 3 and is_marks_key(key) for partition, key, _ in sent)
    assert BoundBundle(table, event).get("4:rest|rv-449") == states["4:rest|rv-449"]

    restored = app.tables.add(MarksTable(app, name="states-restored", default=None, key_type=str,
                                         partitions=4, beacon=app.tables.beacon))
    restored.apply_changelog_batch([changelog_event(app, 3, 20 + n, key, value)
                                    for n, (_, key, value) in enumerate(sent)])
    assert {key: restored.data.get(key) for key in states} == states
