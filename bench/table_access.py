"""CPU per table access of the restaurant stage: Faust's layers against the direct path.

``python -m bench.table_access`` prints microseconds per read (a key present, a key
absent), per write and per dedupe mark, and per pane write one at a time or a batch's in
one RocksDB write, on Faust's own RocksDB store in a temporary directory, no broker
(streams/faust/, point 8). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import timeit
from collections.abc import Callable
from typing import Any

import faust
from faust.types import TP
from faust.types.tuples import Message

from streams.faust.app import ReviewPulseApp
from streams.faust.tables import BatchedTable, BoundMarks, MarksTable, partition_of

PARTITION = 1
PANES_PER_BATCH = 130  # a0: batches of ~210 events write ~0.64 panes an event (bench/HISTORY.md, session 8)
# A pane as the stage stores it in phase a0 (counts, sums, a few pending review ids).
PANE = {"n": 12, "s": {"POSITIVE": 7, "NEGATIVE": 4, "CRITICAL": 1}, "score": 3.25, "cost": 5321,
        "lag": [120, 340, 95], "cat": {"food": 6, "delivery": 5}, "pending": ["ev-000123", "ev-000124"],
        "o": 48213}


def _event(app: faust.App) -> faust.Event:
    message = Message("by-restaurant", PARTITION, 0, 0.0, 0, {}, b"k", b"v", None,
                      tp=TP("by-restaurant", PARTITION))
    return faust.Event(app, b"k", b"v", {}, message)


def _us(fn: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


Row = tuple[str, Callable[[], Any], Callable[[], Any], int]  # name, before, after, accesses a call


def _print_table(header: tuple[str, str, str], rows: list[Row], number: int) -> None:
    """One line per row: µs per access of ``before`` and ``after`` (each call does ``per``)."""
    print(f"{header[0]:<28}{header[1]:>14}{header[2]:>10}")
    for name, before, after, per in rows:
        calls = max(number // per, 5)
        print(f"{name:<28}{_us(before, calls) / per:>14.2f}{_us(after, calls) / per:>10.2f}")


async def run(number: int, marks_per_batch: int) -> None:
    app = ReviewPulseApp("table-access", broker="kafka://127.0.0.1:1", store="rocksdb://",
                         datadir=tempfile.mkdtemp(prefix="table-access-"))
    try:
        panes = app.Table("panes", default=None, key_type=str, partitions=4)
        marks = app.tables.add(MarksTable(app, name="dedupe", default=None, key_type=str, partitions=4,
                                          beacon=app.tables.beacon, options={"ttl": 3600}))
        marks.send_changelog = lambda *args, **kwargs: None  # no broker: the store only
        event = _event(app)
        bound, bound_marks = BatchedTable(panes, event), BoundMarks(marks, event)
        for i in range(1000):
            bound[f"r{i}|1796300000000"] = PANE

        def through_faust(fn: Callable[[], Any]) -> Callable[[], Any]:
            def call() -> Any:  # what BoundTable did before point 8: Faust's table, event current
                with partition_of(event):
                    return fn()
            return call

        store = panes.data
        counter = iter(range(10**9))

        def faust_marks() -> None:
            for _ in range(marks_per_batch):
                marks.data[f"ev-{next(counter)}"] = 7

        def direct_marks() -> None:
            bound_marks.update({f"ev-{next(counter)}": 7 for _ in range(marks_per_batch)})

        pane_keys = [f"r{i}|1796300000000" for i in range(PANES_PER_BATCH)]

        def panes_one_write_each() -> None:  # the stage's flush before one write per batch
            for key in pane_keys:
                bound[key] = PANE

        def panes_one_write() -> None:
            bound.update(dict.fromkeys(pane_keys, PANE))

        rows = [
            ("read, key present", through_faust(lambda: panes.get("r5|1796300000000")),
             lambda: bound.get("r5|1796300000000"), 1),
            ("read, key absent", through_faust(lambda: panes.get("r5|0")), lambda: bound.get("r5|0"), 1),
            ("write (store only)", through_faust(lambda: store._set(store._encode_key("r7|1"),
                                                                    store._encode_value(PANE))),
             lambda: bound.__setitem__("r7|1", PANE), 1),
            (f"dedupe mark, {marks_per_batch} a batch", through_faust(faust_marks), direct_marks,
             marks_per_batch),
        ]
        _print_table(("us per access", "Faust layers", "direct"), rows, number)
        print()
        _print_table(("us per pane write, direct", "one each", "one batch"),
                     [(f"{PANES_PER_BATCH} panes a batch", panes_one_write_each, panes_one_write,
                       PANES_PER_BATCH)], number)
    finally:
        app.consumer._thread.thread_loop.close()  # built with the consumer, never started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="accesses per timing")
    parser.add_argument("--marks-per-batch", type=int, default=2_000)
    args = parser.parse_args()
    asyncio.run(run(args.number, args.marks_per_batch))


if __name__ == "__main__":
    main()
