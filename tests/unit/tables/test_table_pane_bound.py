"""A pane record stays under PANE_MAX_BYTES whatever the flood: the bound of ``pending``.

Pure values, no broker: the rule the restaurant stage follows (a pane that owes
``pane_pending_cap`` reviews folds the next one as final) is replayed here on floods of
any size, with event ids at the id cap and of the widest UTF-8 characters.
"""

from __future__ import annotations

from faust.serializers.codecs import get_codec
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.llm.labels import CATEGORY_VALUES
from tables.values import (
    LABELS,
    N_BUCKETS,
    PANE_FIXED_MAX_BYTES,
    PANE_MAX_BYTES,
    Histogram,
    PaneAggregate,
    pane_pending_cap,
    pending_entry_max_bytes,
)

JSON = get_codec("json")  # what the worker's pane table writes (streams.faust)
HUGE = 2**63 - 1
WIDE = "\U0001F355"  # 4 UTF-8 bytes: the widest printable character


def pane_bytes(pane: PaneAggregate) -> int:
    return len(JSON.dumps(pane.to_json()))


def flood(pane: PaneAggregate, event_ids: list[str], *, cap: int) -> int:
    """Fold ``event_ids`` as the stage does; returns how many were folded as final (shed)."""
    shed = 0
    for event_id in event_ids:
        final = "FALLBACK" if pane.pending_full(cap) else None
        shed += final is not None
        pane.add_first_sight(event_id=event_id, rating=1, label="CRITICAL", score=-1.0,
                             categories=sorted(CATEGORY_VALUES), processing_lag_ms=3_600_001,
                             event_age_ms=3_600_001, final_status=final)
    return shed


def test_pane_fixed_part_is_bounded() -> None:
    """Every counter at 2^63 - 1, every category, every histogram bucket full: no pending."""
    pane = PaneAggregate(**{name: HUGE for name in (
        "reviews", "rating_sum", "score_sum_milli", "positive", "neutral", "negative", "critical",
        "llm_calls", "tokens_in", "tokens_out", "cost_micro_usd", "cache_hits", "fallbacks",
        "budget_skips", "orders_delivered", "late_events", "provisional_labels", "applied_offset")})
    pane.categories = dict.fromkeys(CATEGORY_VALUES, HUGE)
    full = Histogram(HUGE, HUGE, HUGE, [HUGE] * N_BUCKETS)
    pane.processing_lag, pane.event_age, pane.delivery_delay = full, full.copy(), full.copy()
    assert pane_bytes(pane) <= PANE_FIXED_MAX_BYTES
    assert len(LABELS) == 4  # the counters above are every label's


def test_pending_entry_bound_holds_for_the_widest_ids() -> None:
    for event_id in (WIDE * 128, '"' * 128, "\\" * 128, "a" * 128):
        pane = PaneAggregate(pending={event_id: 1, "x": 0})
        assert pane_bytes(pane) - pane_bytes(PaneAggregate(pending={"x": 0})) <= pending_entry_max_bytes(128)


def test_default_cap_is_the_setting_and_a_longer_id_cap_lowers_it() -> None:
    assert pane_pending_cap(max_pending=1_000, id_max_chars=128) == 1_000
    lowered = pane_pending_cap(max_pending=100_000, id_max_chars=4_096)
    assert 1 <= lowered < 100_000
    assert lowered * pending_entry_max_bytes(4_096) + PANE_FIXED_MAX_BYTES <= PANE_MAX_BYTES


def test_review_beyond_the_cap_is_counted_final_and_owes_nothing() -> None:
    pane = PaneAggregate()
    shed = flood(pane, [f"e{i}" for i in range(5)], cap=3)
    assert shed == 2
    assert (pane.reviews, pane.critical, pane.provisional_labels, pane.fallbacks) == (5, 5, 3, 2)
    assert sorted(pane.pending) == ["e0", "e1", "e2"]
    assert not pane.owes("e4")
    assert PaneAggregate.from_json(pane.to_json()) == pane


@settings(max_examples=40, deadline=None)
@given(reviews=st.integers(0, 3_000), max_pending=st.integers(1, 100_000),
       id_max_chars=st.integers(8, 4_096), char=st.sampled_from(["a", "é", "€", WIDE, '"']))
def test_a_flood_of_any_size_keeps_the_pane_under_its_cap(reviews: int, max_pending: int,
                                                         id_max_chars: int, char: str) -> None:
    cap = pane_pending_cap(max_pending=max_pending, id_max_chars=id_max_chars)
    width = id_max_chars - 8  # room for a distinct 8-digit suffix
    pane = PaneAggregate()
    shed = flood(pane, [char * width + f"{i:08d}" for i in range(reviews)], cap=cap)
    assert len(pane.pending) == min(reviews, cap)
    assert shed == max(0, reviews - cap)
    assert pane.reviews == reviews
    assert pane_bytes(pane) <= PANE_MAX_BYTES


def test_a_flood_at_the_default_caps_stays_under_half_a_mebibyte() -> None:
    cap = pane_pending_cap(max_pending=1_000, id_max_chars=128)
    pane = PaneAggregate()
    flood(pane, [WIDE * 120 + f"{i:08d}" for i in range(20_000)], cap=cap)  # a whole backlog
    assert len(pane.pending) == 1_000 and pane.fallbacks == 19_000
    assert pane_bytes(pane) <= PANE_MAX_BYTES
