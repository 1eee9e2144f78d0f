"""The naive baseline's rate is read from its records' own timestamps (bench/measure.py).

The bench prints "a0 vs naive": a rate from count samples seconds apart gave nan or 8,219
ev/s for the same app, so the ratio meant nothing.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from bench.measure import rate_between_timestamps


@given(rate=st.integers(100, 20_000), seconds=st.integers(1, 10), start_ms=st.integers(0, 10**12),
       shuffled=st.randoms(use_true_random=False))
def test_a_steady_producer_reads_back_at_its_rate_in_any_order(rate, seconds, start_ms, shuffled) -> None:
    stamps = [start_ms + round(i * 1000 / rate) for i in range(rate * seconds)]
    shuffled.shuffle(stamps)  # partitions are read in any order
    assert math.isclose(rate_between_timestamps(stamps), rate, rel_tol=0.01)


def test_too_few_or_simultaneous_records_have_no_rate() -> None:
    assert math.isnan(rate_between_timestamps([]))
    assert math.isnan(rate_between_timestamps([5] * 100))
