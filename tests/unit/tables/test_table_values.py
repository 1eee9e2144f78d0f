"""Histogram and PaneAggregate: folding, merging, percentiles, records and JSON."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tables
from tables.values import (
    BUCKET_BOUNDS_MS,
    N_BUCKETS,
    Histogram,
    PaneAggregate,
    score_to_milli,
)


def test_tables_package_is_ours_not_pytables():
    assert Path(tables.__file__).resolve().parents[1] == Path(__file__).resolve().parents[3]


# --- Histogram -------------------------------------------------------------------------------
def hist(*values: int) -> Histogram:
    h = Histogram()
    for v in values:
        h.add(v)
    return h


def test_bucket_bounds_are_increasing_and_include_default_slos():
    assert list(BUCKET_BOUNDS_MS) == sorted(set(BUCKET_BOUNDS_MS))
    assert BUCKET_BOUNDS_MS[0] == 25 and BUCKET_BOUNDS_MS[-1] == 3_600_000
    assert {8_000, 30_000, 600_000} <= set(BUCKET_BOUNDS_MS)
    assert len(BUCKET_BOUNDS_MS) + 1 == N_BUCKETS


def test_histogram_add_tracks_count_sum_max_and_bucket():
    h = hist(10, 25, 26, 4_000_000)
    assert (h.count, h.sum_ms, h.max_ms) == (4, 10 + 25 + 26 + 4_000_000, 4_000_000)
    assert h.bucket_counts[0] == 2  # 10 and 25: a bound belongs to its own bucket (le)
    assert h.bucket_counts[1] == 1  # 26
    assert h.bucket_counts[-1] == 1  # overflow
    assert sum(h.bucket_counts) == h.count


def test_histogram_negative_value_counts_as_zero():
    h = hist(-500)
    assert (h.count, h.sum_ms, h.max_ms, h.bucket_counts[0]) == (1, 0, 0, 1)


def test_empty_histogram_percentiles_are_zero():
    h = Histogram()
    assert [h.percentile(q) for q in (0.0, 0.5, 0.95, 0.99, 1.0)] == [0, 0, 0, 0, 0]


def test_single_observation_percentile_is_capped_at_max():
    h = hist(3_000)  # bucket (2000, 4000]
    assert h.percentile(0.5) == 3_000
    assert h.percentile(0.99) == 3_000


def test_percentile_is_bucket_upper_bound_when_below_max():
    h = hist(*([100] * 95 + [20_000] * 5))
    assert h.percentile(0.50) == 100
    assert h.percentile(0.95) == 100  # rank 95 exactly, not 96 (0.95 * 100 float)
    assert h.percentile(0.96) == 20_000  # bucket (15 s, 30 s] capped at max 20 s
    h.add(29_000)
    assert h.percentile(0.99) == 29_000


def test_percentile_at_exact_bucket_bounds():
    huge = 10**10  # the max sits in overflow, so it never caps the bound read
    upper = [*BUCKET_BOUNDS_MS[1:], huge]  # what a value one past each bound reads as
    for bound, next_up in zip(BUCKET_BOUNDS_MS, upper, strict=True):
        assert hist(bound, huge).percentile(0.5) == bound
        assert hist(bound + 1, huge).percentile(0.5) == next_up


def test_all_in_overflow_reports_max():
    h = hist(3_600_001, 5_000_000, 7_200_000)
    assert h.bucket_counts[-1] == 3
    assert h.percentile(0.5) == 7_200_000
    assert h.percentile(0.01) == 7_200_000


def test_percentile_refuses_q_outside_unit_interval():
    with pytest.raises(ValueError):
        hist(1).percentile(1.5)


def test_histogram_merge_is_commutative_associative_and_pure():
    rng = random.Random(7)
    a, b, c = (hist(*(rng.randrange(-10, 5_000_000) for _ in range(50))) for _ in range(3))
    a_before = a.copy()
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a == a_before
    everything = a.merge(b).merge(c)
    assert everything.count == 150 and sum(everything.bucket_counts) == 150


def test_histogram_json_is_sparse_and_round_trips():
    h = hist(10, 10, 700, 10**9)
    data = h.to_json()
    assert data == [4, 20 + 700 + 10**9, 10**9, [0, 2, 5, 1, N_BUCKETS - 1, 1]]
    assert Histogram.from_json(json.loads(json.dumps(data))) == h


# --- scores ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("score", "milli"),
    [(1.0, 1000), (-1.0, -1000), (0.0, 0), (0.1234, 123), (-0.1236, -124), (1.2, 1000),
     (-7.0, -1000), (0.0005, 0), (0.0015, 2)],
)  # fmt: skip
def test_score_to_milli_rounds_and_clamps(score, milli):
    assert score_to_milli(score) == milli


def test_score_to_milli_refuses_nan():
    with pytest.raises(ValueError):
        score_to_milli(float("nan"))


def test_score_sum_is_order_independent_and_matches_ground_truth(review):
    rng = random.Random(42)
    scores = [rng.uniform(-1, 1) for _ in range(2_000)]
    truth = sum(score_to_milli(s) for s in sorted(scores))  # ground truth in another order

    def fold(order):
        agg = PaneAggregate()
        for s in order:
            agg.add_review(**review(score=s))
        return agg

    forward, backward = fold(scores), fold(reversed(scores))
    chunks = [fold(scores[i : i + 97]) for i in range(0, len(scores), 97)]
    rng.shuffle(chunks)
    merged = PaneAggregate.merge_all(chunks)
    assert forward.score_sum_milli == backward.score_sum_milli == merged.score_sum_milli == truth
    assert forward == backward == merged


# --- PaneAggregate folding -------------------------------------------------------------------
def test_add_review_counts_sentiment_cost_and_lag(pane):
    agg = pane(
        {},
        {"label": "NEGATIVE", "rating": 2, "score": -0.6, "categories": ("price", "price")},
        {"label": "CRITICAL", "rating": 1, "score": -1.0, "categories": ("hygiene", "food_quality")},
        {"label": "NEUTRAL", "rating": 3, "score": 0.0, "categories": ()},
    )
    assert (agg.reviews, agg.rating_sum, agg.score_sum_milli) == (4, 10, 500 - 600 - 1000 + 0)
    assert (agg.positive, agg.neutral, agg.negative, agg.critical) == (1, 1, 1, 1)
    assert agg.categories == {"food_quality": 2, "price": 1, "hygiene": 1}
    assert (agg.llm_calls, agg.tokens_in, agg.tokens_out, agg.cost_micro_usd) == (4, 480, 120, 144)
    assert agg.processing_lag.count == 4 and agg.processing_lag.max_ms == 900
    assert agg.sentiment_avg == pytest.approx(-0.275)
    assert agg.negative_share == 0.5


def test_llm_calls_count_only_uncached_enriched_reviews(pane):
    agg = pane(
        {"status": "ENRICHED", "cache_hit": False},
        {"status": "ENRICHED", "cache_hit": True, "tokens_in": 0, "tokens_out": 0,
         "cost_micro_usd": 0},
        {"status": "FALLBACK", "tokens_in": 0, "tokens_out": 0, "cost_micro_usd": 0},
        {"status": "BUDGET_SKIPPED", "tokens_in": 0, "tokens_out": 0, "cost_micro_usd": 0},
    )  # fmt: skip
    assert (agg.llm_calls, agg.cache_hits, agg.fallbacks, agg.budget_skips) == (1, 1, 1, 1)
    assert agg.cost_micro_usd == 36


@pytest.mark.parametrize(
    ("field", "value"), [("label", "ANGRY"), ("status", "SKIPPED"), ("score", float("nan"))]
)
def test_add_review_refuses_unknown_enum_symbols(review, field, value):
    agg = PaneAggregate()
    with pytest.raises(ValueError):
        agg.add_review(**review(**{field: value}))
    assert agg == PaneAggregate()  # nothing half-applied


def test_add_order_and_late(pane):
    agg = pane(orders=(-30_000, 120_000, 700_000), late=2)
    assert agg.orders_delivered == 3
    assert agg.delivery_delay.sum_ms == 820_000 and agg.delivery_delay.max_ms == 700_000
    assert agg.late_events == 2 and agg.reviews == 0
    assert not agg.is_empty and PaneAggregate().is_empty


def test_empty_aggregate_reads_zero():
    agg = PaneAggregate()
    assert agg.sentiment_avg == 0.0 and agg.negative_share == 0.0


def test_applied_offset_is_an_idempotence_watermark(pane):
    agg = pane({})
    assert not agg.seen(0)
    agg.mark_applied(41)
    agg.mark_applied(7)  # never goes back
    assert agg.applied_offset == 41 and agg.seen(41) and not agg.seen(42)
    other = pane({})
    other.mark_applied(99)
    assert agg.merge(other).applied_offset == 99 == other.merge(agg).applied_offset


def test_a_join_replaces_the_provisional_label_once_and_survives_the_table_round_trip():
    agg = PaneAggregate()
    agg.add_first_sight(event_id="e1", rating=2, label="POSITIVE", score=0.5, categories=["price"],
                        processing_lag_ms=10)
    agg.add_late(review_id="e2")
    stored = PaneAggregate.from_json(json.loads(json.dumps(agg.to_json())))
    assert stored.owes("e1") and stored.owes("e2") and stored.provisional_labels == 1

    final = {"label": "NEGATIVE", "score": -0.8, "categories": ["service"], "status": "ENRICHED",
             "cache_hit": False, "tokens_in": 30, "tokens_out": 10, "cost_micro_usd": 7}
    assert stored.join(event_id="e1", provisional=("POSITIVE", 0.5, ["price"]), **final)
    again = stored.join(event_id="e1", provisional=("POSITIVE", 0.5, ["price"]), **final)
    assert stored.join(event_id="e2", provisional=None, **final)  # late: it only stops owing

    assert again is False
    assert (stored.positive, stored.negative, stored.score_sum_milli) == (0, 1, -800)
    assert stored.categories == {"service": 1}
    assert (stored.llm_calls, stored.cost_micro_usd, stored.provisional_labels) == (1, 7, 0)
    assert not stored.owes("e1") and not stored.owes("e2") and "pending" not in stored.to_json()


def test_a_counted_join_without_its_provisional_label_is_refused_and_changes_nothing():
    agg = PaneAggregate()
    agg.add_first_sight(event_id="e1", rating=2, label="POSITIVE", score=0.5, categories=[],
                        processing_lag_ms=10)
    with pytest.raises(ValueError, match="provisional"):
        agg.join(event_id="e1", provisional=None, label="NEGATIVE", score=-0.5, categories=[],
                 status="ENRICHED", cache_hit=False, tokens_in=0, tokens_out=0, cost_micro_usd=0)
    assert agg.owes("e1") and agg.positive == 1


# --- PaneAggregate merging -------------------------------------------------------------------
def random_pane(rng: random.Random) -> PaneAggregate:
    agg = PaneAggregate()
    for _ in range(rng.randrange(0, 20)):
        agg.add_review(
            rating=rng.randint(1, 5),
            score=rng.uniform(-1, 1),
            label=rng.choice(("POSITIVE", "NEUTRAL", "NEGATIVE", "CRITICAL")),
            categories=rng.sample(("price", "service", "hygiene", "other"), rng.randint(0, 3)),
            status=rng.choice(("ENRICHED", "FALLBACK", "BUDGET_SKIPPED")),
            cache_hit=rng.random() < 0.3,
            tokens_in=rng.randrange(500),
            tokens_out=rng.randrange(100),
            cost_micro_usd=rng.randrange(200),
            processing_lag_ms=rng.randrange(-100, 100_000),
        )
    for _ in range(rng.randrange(0, 5)):
        agg.add_order(delay_ms=rng.randrange(-600_000, 4_000_000))
    for _ in range(rng.randrange(0, 2)):
        agg.add_late()
    agg.mark_applied(rng.randrange(-1, 1_000))
    return agg


def test_merge_is_commutative_associative_and_pure():
    rng = random.Random(3)
    for _ in range(20):
        a, b, c = random_pane(rng), random_pane(rng), random_pane(rng)
        snapshot = [p.copy() for p in (a, b, c)]
        assert a.merge(b) == b.merge(a)
        assert a.merge(b).merge(c) == a.merge(b.merge(c))
        assert [a, b, c] == snapshot
        assert a.merge(PaneAggregate()) == a


def test_merge_all_equals_any_order_of_pairwise_merges():
    rng = random.Random(11)
    panes = [random_pane(rng) for _ in range(5)]
    expected = PaneAggregate.merge_all(panes)
    for order in itertools.islice(itertools.permutations(panes), 30):
        assert PaneAggregate.merge_all(order) == expected
    assert PaneAggregate.merge_all([]) == PaneAggregate()
    assert expected is not panes[0]


def test_copy_is_deep():
    rng = random.Random(5)
    a = random_pane(rng)
    b = a.copy()
    assert b == a and b is not a
    b.add_review(**{"rating": 1, "score": -1, "label": "CRITICAL", "categories": ["x"],
                    "status": "ENRICHED", "cache_hit": False, "tokens_in": 1, "tokens_out": 1,
                    "cost_micro_usd": 1, "processing_lag_ms": 1})  # fmt: skip
    b.add_order(delay_ms=5)
    assert a != b and "x" not in a.categories


# --- records and JSON ------------------------------------------------------------------------
def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def test_to_record_validates_and_round_trips_through_avro(pane, aggregate_contract):
    agg = pane({}, {"label": "CRITICAL", "score": -0.9, "categories": ("hygiene",)},
               orders=(60_000,), late=1)  # fmt: skip
    start = 1_700_000_040_000
    record = agg.to_record(
        restaurant_id="r-1",
        window_kind="HOPPING",
        window_start_ms=start,
        window_end_ms=start + 900_000,
        closed_at_ms=start + 910_000,
    )
    assert aggregate_contract.validate(record)
    assert record["aggregate_id"] == f"r-1:HOPPING:{start}"
    assert record["processing_lag"]["p95_ms"] == 900
    back = aggregate_contract.round_trip(record)
    for name in ("window_start", "window_end", "closed_at"):
        assert isinstance(back[name], datetime)
        assert ms(back[name]) == record[name] and back[name].tzinfo == UTC
        back[name] = record[name]
    assert back == record


def test_to_record_of_an_empty_window_validates(aggregate_contract):
    record = PaneAggregate().to_record(
        restaurant_id="r", window_kind="TUMBLING", window_start_ms=0, window_end_ms=60_000,
        closed_at_ms=70_000,
    )  # fmt: skip
    assert aggregate_contract.validate(record)
    assert record["sentiment_avg"] == 0.0 and record["processing_lag"]["p99_ms"] == 0


def test_to_record_refuses_unknown_window_kind():
    with pytest.raises(ValueError):
        PaneAggregate().to_record(
            restaurant_id="r", window_kind="SESSION", window_start_ms=0, window_end_ms=1,
            closed_at_ms=1,
        )  # fmt: skip


def test_json_round_trip_through_text():
    rng = random.Random(9)
    for _ in range(30):
        agg = random_pane(rng)
        assert PaneAggregate.from_json(json.loads(json.dumps(agg.to_json()))) == agg


def test_json_omits_zeros_and_empty_histograms():
    assert PaneAggregate().to_json() == {}
    agg = PaneAggregate()
    agg.add_late()
    assert agg.to_json() == {"late_events": 1}


def test_from_json_refuses_unknown_keys():
    with pytest.raises(TypeError):
        PaneAggregate.from_json({"reviewz": 1})
