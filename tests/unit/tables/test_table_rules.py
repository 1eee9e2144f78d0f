"""Alert rules at their threshold edges, and the RestaurantAlert records they produce."""

from __future__ import annotations

import pytest

from streams.settings import Settings
from tables.rules import (
    AlertDecision,
    Rule,
    RuleThresholds,
    Severity,
    alert_record,
    budget_exceeded_record,
    budget_warning_record,
    delivery_delay,
    evaluate_hopping,
    evaluate_tumbling,
    negative_share,
    processing_lag,
    sentiment_drop,
    window_cost,
)
from tables.values import PaneAggregate

TH = RuleThresholds()  # the Settings defaults
T0 = 1_700_000_040_000


def test_thresholds_from_settings_convert_units():
    s = Settings(
        alert_negative_share=0.3,
        alert_negative_min_reviews=7,
        alert_sentiment_drop=0.25,
        alert_sentiment_min_reviews=4,
        alert_window_cost_usd=0.02,
        processing_lag_slo_s=2.5,
        processing_lag_critical_s=9,
        delivery_delay_slo_s=300,
    )
    assert RuleThresholds.from_settings(s) == RuleThresholds(
        negative_share=0.3,
        negative_min_reviews=7,
        sentiment_drop_milli=250,
        sentiment_min_reviews=4,
        window_cost_micro_usd=20_000,
        processing_lag_slo_ms=2_500,
        processing_lag_critical_ms=9_000,
        delivery_delay_slo_ms=300_000,
    )
    assert RuleThresholds.from_settings(Settings()) == TH


def labelled(**counts: int) -> PaneAggregate:
    """A window with that many reviews per label (``positive=3, negative=2``)."""
    agg = PaneAggregate()
    scores = {"positive": 0.8, "neutral": 0.0, "negative": -0.6, "critical": -1.0}
    for label, n in counts.items():
        for _ in range(n):
            agg.add_review(
                rating=3, score=scores[label], label=label.upper(), categories=(),
                status="ENRICHED", cache_hit=False, tokens_in=0, tokens_out=0,
                cost_micro_usd=0, processing_lag_ms=100,
            )  # fmt: skip
    return agg


def scored(*scores: float) -> PaneAggregate:
    agg = PaneAggregate()
    for s in scores:
        agg.add_review(
            rating=3, score=s, label="NEUTRAL", categories=(), status="FALLBACK",
            cache_hit=False, tokens_in=0, tokens_out=0, cost_micro_usd=0, processing_lag_ms=0,
        )  # fmt: skip
    return agg


# --- negative_share --------------------------------------------------------------------------
def test_negative_share_exactly_at_threshold_does_not_fire():
    assert negative_share(labelled(positive=3, negative=2), TH) is None  # 0.4 == X


def test_negative_share_over_threshold_warns():
    d = negative_share(labelled(positive=3, negative=1, critical=2), TH)  # 0.5
    assert d == AlertDecision(Rule.NEGATIVE_SHARE, Severity.WARNING, 0.5, 0.4, d.message)
    assert "3 of 6" in d.message


def test_negative_share_needs_min_reviews():
    assert negative_share(labelled(negative=4), TH) is None  # 4 < 5 reviews
    assert negative_share(labelled(negative=5), TH) is not None


def test_negative_share_critical_at_twice_the_threshold():
    assert negative_share(labelled(positive=3, negative=7), TH).severity == Severity.WARNING  # 0.7
    d = negative_share(labelled(positive=2, negative=8), TH)  # 0.8 == 2X
    assert (d.severity, d.threshold) == (Severity.CRITICAL, 0.8)


def test_negative_share_critical_threshold_is_capped_at_one():
    th = RuleThresholds(negative_share=0.7)
    assert negative_share(labelled(positive=1, negative=9), th).severity == Severity.WARNING
    d = negative_share(labelled(critical=10), th)
    assert (d.severity, d.threshold) == (Severity.CRITICAL, 1.0)


# --- sentiment_drop --------------------------------------------------------------------------
def test_sentiment_drop_exactly_at_threshold_does_not_fire():
    assert sentiment_drop(scored(0.3, 0.3, 0.3), scored(0.8, 0.8, 0.8), TH) is None  # 0.5


def test_sentiment_drop_just_over_threshold_warns():
    d = sentiment_drop(scored(0.3, 0.3, 0.299), scored(0.8, 0.8, 0.8), TH)
    assert (d.rule, d.severity, d.threshold) == (Rule.SENTIMENT_DROP, Severity.WARNING, 0.5)
    assert d.value == pytest.approx(0.500333, abs=1e-6)


def test_sentiment_drop_exact_with_unequal_counts():
    # previous avg 1/3 (sum 1000 over 3); current avg -1/6 (sum -500 over 3): drop 0.5 exactly
    prev = scored(1.0, 0.0, 0.0)
    assert sentiment_drop(scored(-0.5, 0.0, 0.0), prev, TH) is None
    assert sentiment_drop(scored(-0.5, 0.0, 0.0, -0.001), prev, TH) is None  # 4 reviews: -0.12525
    assert sentiment_drop(scored(-0.501, 0.0, 0.0), prev, TH) is not None


def test_sentiment_drop_critical_at_twice_the_threshold():
    d = sentiment_drop(scored(-0.5, -0.5, -0.5), scored(0.5, 0.5, 0.5), TH)  # 1.0 == 2D
    assert (d.severity, d.threshold) == (Severity.CRITICAL, 1.0)


def test_sentiment_drop_needs_min_reviews_in_both_windows_and_a_previous():
    low, high = scored(-1, -1, -1), scored(1, 1, 1)
    assert sentiment_drop(low, high, TH) is not None
    assert sentiment_drop(scored(-1, -1), high, TH) is None
    assert sentiment_drop(low, scored(1, 1), TH) is None
    assert sentiment_drop(low, None, TH) is None
    assert sentiment_drop(high, low, TH) is None  # a rise is not a drop


# --- window_cost -----------------------------------------------------------------------------
def costing(micro_usd: int) -> PaneAggregate:
    agg = PaneAggregate()
    agg.add_review(
        rating=5, score=1, label="POSITIVE", categories=(), status="ENRICHED", cache_hit=False,
        tokens_in=10, tokens_out=10, cost_micro_usd=micro_usd, processing_lag_ms=0,
    )  # fmt: skip
    return agg


def test_window_cost_fires_strictly_over_the_cap():
    assert window_cost(costing(500_000), TH) is None
    d = window_cost(costing(500_001), TH)
    assert (d.rule, d.severity, d.value, d.threshold) == (
        Rule.WINDOW_COST, Severity.WARNING, 500_001.0, 500_000.0,
    )  # fmt: skip


def test_window_cost_cap_zero_fires_on_any_cost():
    th = RuleThresholds(window_cost_micro_usd=0)
    assert window_cost(costing(0), th) is None
    assert window_cost(costing(1), th) is not None


# --- processing_lag --------------------------------------------------------------------------
def lagging(*lags_ms: int) -> PaneAggregate:
    agg = PaneAggregate()
    for lag in lags_ms:
        agg.add_review(
            rating=5, score=1, label="POSITIVE", categories=(), status="ENRICHED",
            cache_hit=False, tokens_in=0, tokens_out=0, cost_micro_usd=0, processing_lag_ms=lag,
        )  # fmt: skip
    return agg


def test_processing_lag_at_slo_bucket_bound_does_not_fire():
    assert processing_lag(lagging(*[8_000] * 20), TH) is None  # p95 == SLO (a bucket bound)


def test_processing_lag_over_slo_warns_over_critical_is_critical():
    d = processing_lag(lagging(*[100] * 18, 8_001, 8_001), TH)  # rank 19 in (8 s, 15 s]
    assert (d.severity, d.value, d.threshold) == (Severity.WARNING, 8_001.0, 8_000.0)
    d = processing_lag(lagging(*[100] * 18, 30_000, 30_000), TH)
    assert (d.severity, d.value) == (Severity.WARNING, 30_000.0)  # == critical: still WARNING
    d = processing_lag(lagging(*[100] * 18, 30_001, 45_000), TH)
    assert (d.severity, d.value, d.threshold) == (Severity.CRITICAL, 45_000.0, 30_000.0)


def test_processing_lag_p95_ignores_a_slow_tail_under_five_percent():
    assert processing_lag(lagging(*[100] * 19, 60_000), TH) is None


def test_processing_lag_needs_observations():
    assert processing_lag(PaneAggregate(), TH) is None


# --- delivery_delay --------------------------------------------------------------------------
def delivering(*delays_ms: int) -> PaneAggregate:
    agg = PaneAggregate()
    for delay in delays_ms:
        agg.add_order(delay_ms=delay)
    return agg


def test_delivery_delay_fires_over_slo_only_with_orders():
    assert delivery_delay(PaneAggregate(), TH) is None
    assert delivery_delay(delivering(600_000), TH) is None
    d = delivery_delay(delivering(600_001), TH)
    assert (d.rule, d.severity, d.value, d.threshold) == (
        Rule.DELIVERY_DELAY, Severity.WARNING, 600_001.0, 600_000.0,
    )  # fmt: skip


# --- evaluation and records ------------------------------------------------------------------
def test_evaluate_tumbling_collects_every_firing_rule():
    current = scored(-0.9, -0.9, -0.9)
    current.merge_from(costing(600_000))
    current.merge_from(lagging(*[40_000] * 4))
    current.merge_from(delivering(900_000))
    previous = scored(0.9, 0.9, 0.9)
    rules = [d.rule for d in evaluate_tumbling(current, previous, TH)]
    assert rules == [Rule.SENTIMENT_DROP, Rule.WINDOW_COST, Rule.PROCESSING_LAG,
                     Rule.DELIVERY_DELAY]  # fmt: skip
    assert evaluate_tumbling(PaneAggregate(), None, TH) == []


def test_evaluate_hopping():
    assert [d.rule for d in evaluate_hopping(labelled(negative=5), TH)] == [Rule.NEGATIVE_SHARE]
    assert evaluate_hopping(labelled(positive=5), TH) == []


def test_alert_record_validates_and_round_trips(alert_contract):
    decision = negative_share(labelled(positive=1, negative=9), TH)
    record = alert_record(
        decision,
        restaurant_id="r-9",
        window_start_ms=T0,
        window_end_ms=T0 + 900_000,
        emitted_at_ms=T0 + 910_123,
    )
    assert alert_contract.validate(record)
    assert record["alert_id"] == f"r-9:negative_share:{T0}"
    assert (record["rule"], record["severity"]) == ("negative_share", "CRITICAL")
    assert type(record["rule"]) is str and type(record["severity"]) is str
    back = alert_contract.round_trip(record)
    assert {k: v for k, v in back.items() if k not in ("window_start", "window_end", "emitted_at")} == {
        k: v for k, v in record.items() if k not in ("window_start", "window_end", "emitted_at")
    }
    assert int(back["emitted_at"].timestamp() * 1000) == T0 + 910_123


def test_every_tumbling_decision_makes_a_valid_record(alert_contract):
    current = scored(-0.9, -0.9, -0.9)
    current.merge_from(costing(600_000))
    current.merge_from(lagging(*[40_000] * 4))
    current.merge_from(delivering(900_000))
    decisions = evaluate_tumbling(current, scored(0.9, 0.9, 0.9), TH)
    # every tumbling rule fires on this window, so every one of them is checked below
    assert {d.rule for d in decisions} == {
        Rule.SENTIMENT_DROP, Rule.WINDOW_COST, Rule.PROCESSING_LAG, Rule.DELIVERY_DELAY}
    for d in decisions:
        assert alert_contract.validate(
            alert_record(d, restaurant_id="r", window_start_ms=T0, window_end_ms=T0 + 60_000,
                         emitted_at_ms=T0 + 70_000)
        )  # fmt: skip


def test_budget_warning_record_follows_the_alert_contract(alert_contract):
    record = budget_warning_record(restaurant_id="r-1", spent_micro_usd=800_010, cap_micro_usd=1_000_000,
                                   share=0.8, day_of_ms=T0, emitted_at_ms=T0 + 5)
    assert alert_contract.validate(record)
    assert (record["rule"], record["severity"], record["threshold"]) == (
        "budget_warning", "WARNING", 800_000.0)


def test_budget_exceeded_record_covers_the_utc_day(alert_contract):
    record = budget_exceeded_record(
        restaurant_id="r-1",
        spent_micro_usd=1_000_020,
        cap_micro_usd=1_000_000,
        day_of_ms=T0,
        emitted_at_ms=T0 + 5,
    )
    assert alert_contract.validate(record)
    assert record["window_start"] == 1_699_920_000_000  # 2023-11-14T00:00:00Z
    assert record["window_end"] - record["window_start"] == 86_400_000
    assert record["alert_id"] == "r-1:budget_exceeded:1699920000000"
    assert (record["rule"], record["severity"], record["value"], record["threshold"]) == (
        "budget_exceeded", "CRITICAL", 1_000_020.0, 1_000_000.0,
    )  # fmt: skip
