"""Figures the bench computes from records (bench/measure.py).

The naive baseline's rate is read from its records' own timestamps: "a0 vs naive" from
count samples seconds apart gave nan or 8,219 ev/s for the same app, so the ratio meant
nothing. Phase b's p99 by third of the run tells a backlog from a tail, and its latency to
the pane counts the reviews an earlier phase left in the same pane.
"""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from bench.measure import p99_by_period, rate_between_timestamps, visible_latencies_ms
from streams.dev.reader import Record


@given(rate=st.integers(100, 20_000), seconds=st.integers(1, 10), start_ms=st.integers(0, 10**12),
       shuffled=st.randoms(use_true_random=False))
def test_a_steady_producer_reads_back_at_its_rate_in_any_order(rate, seconds, start_ms, shuffled) -> None:
    stamps = [start_ms + round(i * 1000 / rate) for i in range(rate * seconds)]
    shuffled.shuffle(stamps)  # partitions are read in any order
    assert math.isclose(rate_between_timestamps(stamps), rate, rel_tol=0.01)


def test_too_few_or_simultaneous_records_have_no_rate() -> None:
    assert math.isnan(rate_between_timestamps([]))
    assert math.isnan(rate_between_timestamps([5] * 100))


@given(seconds=st.integers(3, 60), tail_ms=st.integers(100, 2_000), start_ms=st.integers(0, 10**12))
def test_a_fixed_tail_gives_even_thirds_and_a_backlog_rising_ones(seconds, tail_ms, start_ms) -> None:
    """Phase b prints its p99 by third of the run: a backlog must not read as a tail."""
    occurred = [start_ms + i * 10 for i in range(seconds * 100)]  # 100 reviews a second
    flat = [tail_ms if i % 50 == 0 else 50.0 for i in range(len(occurred))]  # 2% slow, evenly
    assert p99_by_period(occurred, flat) == [tail_ms] * 3
    growing = [(at - start_ms) / 10 for at in occurred]  # latency grows with time: a backlog
    thirds = p99_by_period(occurred, growing)
    assert thirds[0] < thirds[1] < thirds[2]


def test_no_latencies_have_no_thirds() -> None:
    assert all(math.isnan(p) for p in p99_by_period([], []))


def _review(event_id: str, occurred_ms: int) -> Record:
    value = {"event_id": event_id, "restaurant_id": "r1", "occurred_at": occurred_ms,
             "enriched_at": occurred_ms + 500}
    return Record("reviews.enriched", 0, 0, b"r1", value, (), occurred_ms + 500)


def _pane_write(at_ms: int, reviews: int) -> Record:
    return Record("panes-changelog", 0, 0, b'"r1|0"', json.dumps({"reviews": reviews}).encode(), (), at_ms)


def test_reviews_an_earlier_phase_left_in_the_pane_rank_first() -> None:
    """Three reviews of a0 share b's first pane: b's second review is the pane's fifth, so the
    write at 10,550 ms holding four reviews does not hold it yet; the one at 10,700 ms does."""
    earlier = [_review(f"a0-{i}", 1_000 + i) for i in range(3)]
    measured = [_review("b-1", 10_000), _review("b-2", 10_500)]
    writes = [_pane_write(10_050, 4), _pane_write(10_550, 4), _pane_write(10_700, 5)]
    counted = visible_latencies_ms(measured, writes, pane_size_ms=60_000, earlier=earlier)
    assert counted.visible == [50, 200]
    assert counted.visible_occurred_ms == [10_000, 10_500]
    assert counted.earlier_write == 1 and counted.by_time_only == 0 and counted.unmatched == 0
    alone = visible_latencies_ms(measured, writes, pane_size_ms=60_000)
    assert alone.visible == [50, 50]  # ranks 1 and 2: the too-low reading this guards against
