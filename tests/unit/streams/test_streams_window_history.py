"""Reading a restaurant's history back from restaurants.aggregates (issue 33.3): the range
is checked before any read, and a range's windows come out once each, oldest first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.window_history import RangeError, check_range, select

MINUTE = 60_000


def window(start: int, kind: str = "TUMBLING", *, reviews: int = 1) -> dict:
    return {"aggregate_id": f"rest-1:{kind}:{start}", "window_kind": kind, "window_start": start,
            "window_end": start + MINUTE, "reviews": reviews}


def test_a_range_is_refused_when_empty_reversed_or_too_wide() -> None:
    check_range(0, 7 * 24 * 60 * MINUTE, max_range_s=8 * 24 * 3600)
    for start, end in ((5, 5), (10, 5)):
        with pytest.raises(RangeError, match="after"):
            check_range(start, end, max_range_s=60)
    with pytest.raises(RangeError, match=r"limit of 3600 s \(REVIEWPULSE_HISTORY_MAX_RANGE_S\)"):
        check_range(0, 3601_000, max_range_s=3600)


def test_windows_of_the_kind_and_range_come_once_each_the_last_copy_winning() -> None:
    sent = [window(3 * MINUTE), window(MINUTE), window(MINUTE, "HOPPING"), window(0),
            window(MINUTE, reviews=7), window(4 * MINUTE)]  # 1 min sent twice; 4 min past the range
    chosen = select(sent, from_ms=MINUTE, to_ms=4 * MINUTE, kind="TUMBLING")
    assert [(w["window_start"], w["reviews"]) for w in chosen] == [(MINUTE, 7), (3 * MINUTE, 1)]


@given(starts=st.lists(st.integers(0, 100), max_size=60), lo=st.integers(0, 100), span=st.integers(1, 100))
def test_select_keeps_exactly_the_distinct_windows_starting_in_range(starts: list[int], lo: int,
                                                                     span: int) -> None:
    chosen = select([window(s * MINUTE) for s in starts], from_ms=lo * MINUTE, to_ms=(lo + span) * MINUTE,
                    kind="TUMBLING")
    assert [w["window_start"] // MINUTE for w in chosen] == sorted({s for s in starts if lo <= s < lo + span})
