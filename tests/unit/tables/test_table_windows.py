"""Window arithmetic: alignment, hopping membership, panes, closing and pane retention."""

from __future__ import annotations

import pytest

from streams.settings import Settings
from tables.windows import (
    DAY_MS,
    NO_WATERMARK,
    Watermark,
    WindowKind,
    WindowSpec,
    closable,
    close_watermark,
    hopping_windows,
    pane_start,
    panes_of,
    tumbling_window,
    utc_day,
)

T0 = 1_700_000_040_000  # a multiple of 60 s: 2023-11-14T22:14:00Z


@pytest.fixture
def spec() -> WindowSpec:
    return WindowSpec(window_size_s=60, hopping_size_s=900, hopping_step_s=60, window_grace_s=10)


def test_from_settings_reads_the_window_fields():
    s = Settings(window_size_s=30, hopping_size_s=600, hopping_step_s=20, window_grace_s=5)
    spec = WindowSpec.from_settings(s)
    assert spec == WindowSpec(30, 600, 20, 5)
    assert spec.pane_ms == s.pane_size_s * 1000 == 10_000


@pytest.mark.parametrize(
    "kwargs",
    [{"hopping_size_s": 100, "hopping_step_s": 30}, {"window_size_s": 0}, {"window_grace_s": -1}],
)
def test_window_spec_refuses_inconsistent_settings(kwargs):
    with pytest.raises(ValueError):
        WindowSpec(**kwargs)


@pytest.mark.parametrize(
    ("ts", "start"),
    [(T0, T0), (T0 + 1, T0), (T0 + 59_999, T0), (T0 + 60_000, T0 + 60_000), (-1, -60_000)],
)
def test_pane_and_tumbling_bounds_are_epoch_aligned_start_inclusive_end_exclusive(ts, start):
    assert pane_start(ts, 60_000) == start
    assert tumbling_window(ts, 60_000) == (start, start + 60_000)


def test_hopping_windows_hold_the_timestamp_and_number_size_over_step():
    ts = T0 + 12_345
    windows = hopping_windows(ts, 900_000, 60_000)
    assert len(windows) == 15
    assert all(s <= ts < e and e - s == 900_000 and s % 60_000 == 0 for s, e in windows)
    assert windows == sorted(windows)
    assert windows[-1] == (T0, T0 + 900_000)
    assert windows[0] == (T0 - 14 * 60_000, T0 + 60_000)


def test_hopping_windows_at_a_step_boundary():
    windows = hopping_windows(T0, 900_000, 60_000)
    assert windows[0][1] == T0 + 60_000  # the window ending exactly at T0 does not hold T0
    assert windows[-1][0] == T0


def test_hopping_equal_to_tumbling_when_size_is_step():
    assert hopping_windows(T0 + 5, 60_000, 60_000) == [tumbling_window(T0 + 5, 60_000)]


def test_panes_of_cover_the_window():
    assert panes_of(T0, T0 + 180_000, 60_000) == [T0, T0 + 60_000, T0 + 120_000]
    assert len(panes_of(T0, T0 + 900_000, 60_000)) == 15
    with pytest.raises(ValueError):
        panes_of(T0 + 1, T0 + 60_000, 60_000)


def test_closable_at_exact_boundaries():
    end = T0 + 60_000
    assert not closable(end, watermark_ms=end + 9_999, grace_ms=10_000)
    assert closable(end, watermark_ms=end + 10_000, grace_ms=10_000)
    assert closable(end, watermark_ms=end, grace_ms=0)
    assert not closable(end, watermark_ms=NO_WATERMARK, grace_ms=0)


def test_close_watermark_takes_the_later_of_event_time_and_wall_clock():
    assert close_watermark(event_watermark_ms=T0, wall_clock_ms=T0 + 30_000, allowance_ms=60_000) == T0
    # a quiet partition: the wall clock moves the watermark on
    assert (
        close_watermark(event_watermark_ms=T0, wall_clock_ms=T0 + 90_000, allowance_ms=60_000) == T0 + 30_000
    )


def test_watermark_only_moves_forward():
    wm = Watermark().observe(T0).observe(T0 - 5_000)
    assert wm.event_ms == T0
    assert wm.observe(T0 + 1).event_ms == T0 + 1
    assert Watermark().effective_ms(wall_clock_ms=T0, allowance_ms=1_000) == T0 - 1_000


def test_utc_day():
    start, end = utc_day(T0)
    assert start % DAY_MS == 0 and start <= T0 < end and end - start == DAY_MS
    assert start == 1_699_920_000_000  # 2023-11-14T00:00:00Z


def test_is_late_judges_the_tumbling_window_at_grace_edge(spec):
    ts = T0 + 59_999  # window [T0, T0 + 60 s)
    assert not spec.is_late(ts, watermark_ms=T0 + 69_999)
    assert spec.is_late(ts, watermark_ms=T0 + 70_000)


def test_is_late_after_restart_asks_the_closed_window_record(spec):
    # in-memory watermark lost (no event yet), but the window was closed before the crash
    assert spec.is_late(T0 + 5, watermark_ms=NO_WATERMARK, last_closed_end_ms=T0 + 60_000)
    assert not spec.is_late(T0 + 60_000, watermark_ms=NO_WATERMARK, last_closed_end_ms=T0 + 60_000)


def test_late_pane_is_the_open_pane_of_the_watermark(spec):
    wm = T0 + 70_000
    pane = spec.late_pane(wm)
    assert pane == T0 + 60_000
    assert not closable(spec.tumbling_of(pane)[1], watermark_ms=wm, grace_ms=spec.grace_ms)


def test_windows_ending_between_tumbling(spec):
    k = WindowKind.TUMBLING
    assert spec.windows_ending_between(T0, T0 + 180_000, k) == [T0, T0 + 60_000, T0 + 120_000]
    # end exactly at after_ms is excluded, end exactly at up_to_ms included
    assert spec.windows_ending_between(T0 + 60_000, T0 + 120_000, k) == [T0 + 60_000]
    assert spec.windows_ending_between(T0 + 59_999, T0 + 60_000, k) == [T0]
    assert spec.windows_ending_between(T0, T0 + 59_999, k) == []
    assert spec.windows_ending_between(T0, T0, k) == []


def test_windows_ending_between_hopping(spec):
    k = WindowKind.HOPPING
    starts = spec.windows_ending_between(T0, T0 + 120_000, k)
    assert starts == [T0 + 60_000 - 900_000, T0 + 120_000 - 900_000]
    assert spec.windows_ending_between(T0 + 1, T0 + 60_000, "HOPPING") == [T0 - 840_000]


def test_closer_sweep_closes_each_window_exactly_once(spec):
    """Consecutive sweeps (after = previous horizon) enumerate every window once."""
    for kind in WindowKind:
        seen: list[int] = []
        after = T0
        for wm in range(T0, T0 + 2 * 3_600_000, 7_001):
            horizon = spec.close_horizon_ms(wm)
            if horizon <= after:
                continue
            seen += spec.windows_ending_between(after, horizon, kind)
            after = horizon
        step = spec.step_ms(kind)
        assert seen == list(range(seen[0], seen[-1] + 1, step))


def test_oldest_pane_needed_keeps_open_windows_and_previous_tumbling(spec):
    wm = T0 + 70_000  # horizon T0 + 60 s: [T0, T0 + 60 s) just closed
    oldest = spec.oldest_pane_needed(wm)
    horizon = spec.close_horizon_ms(wm)
    for kind in WindowKind:  # every window still open (end > horizon) keeps all its panes
        open_starts = spec.windows_ending_between(horizon, horizon + spec.size_ms(kind), kind)
        assert open_starts and min(open_starts) >= oldest
    assert oldest <= T0  # [T0, T0 + 60 s) is the previous window of the oldest open tumbling
    # the oldest open hopping window ends after the horizon and starts at the oldest pane
    assert oldest == T0 + 120_000 - 900_000
    assert oldest + 900_000 > horizon
    # previous tumbling window kept when tumbling is the longest window
    small = WindowSpec(window_size_s=60, hopping_size_s=60, hopping_step_s=60, window_grace_s=10)
    assert small.oldest_pane_needed(wm) == T0


def test_mixed_pane_size():
    spec = WindowSpec(window_size_s=60, hopping_size_s=600, hopping_step_s=40, window_grace_s=0)
    assert spec.pane_ms == 20_000
    # 600 s of window ends: every 60 s for tumbling, every 40 s for hopping (T0 is a multiple of both)
    expected = {WindowKind.TUMBLING: (10, 3), WindowKind.HOPPING: (15, 30)}  # windows, panes each
    assert set(expected) == set(WindowKind)
    for kind, (windows, panes_each) in expected.items():
        starts = spec.windows_ending_between(T0, T0 + 600_000, kind)
        assert len(starts) == windows, kind
        for start in starts:
            assert len(panes_of(start, start + spec.size_ms(kind), spec.pane_ms)) == panes_each
