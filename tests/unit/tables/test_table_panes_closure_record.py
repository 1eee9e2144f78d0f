"""The closure record's keys name what they hold; records of before the rename still read.

A worker upgraded onto changelogs written by the previous version restores closures with
the old keys ``"t"`` and ``"h"``: read as the new ones, its closed windows stay closed.
"""

from __future__ import annotations

from tables.panes import EMPTY_CLOSURE, HOPPING_CLOSED, TUMBLING_CLOSED, PartitionCache, PartitionState
from tables.windows import WindowSpec

SPEC = WindowSpec(window_size_s=5, hopping_size_s=20, hopping_step_s=5, window_grace_s=2)


def test_a_closure_written_before_the_rename_reads_with_the_new_keys() -> None:
    closures = {"r:rest-1": {"t": 10_000, "h": 5_000, "panes": [10_000]}}
    state = PartitionState(panes={}, closures=closures, spec=SPEC, partition=0, retention_ms=3_600_000,
                           cache=PartitionCache())
    closure = state.closure("rest-1")
    assert (closure[TUMBLING_CLOSED], closure[HOPPING_CLOSED], closure["panes"]) == (10_000, 5_000, [10_000])
    assert "t" not in closure and "h" not in closure


def test_an_unknown_restaurant_starts_with_nothing_closed() -> None:
    state = PartitionState(panes={}, closures={}, spec=SPEC, partition=0, retention_ms=3_600_000,
                           cache=PartitionCache())
    assert state.closure("rest-1") == EMPTY_CLOSURE
