"""Token budget (fake clock), per-restaurant cap, result cache and integer cost math."""

from __future__ import annotations

import pytest

from agents.llm.budget import RestaurantDailySpend, TokenBudget, utc_day, would_exceed
from agents.llm.cache import ResultCache, cache_key, normalise_text
from agents.llm.labels import Enrichment, Sentiment
from agents.llm.pricing import (
    Prices,
    apportion,
    cost_micro_usd,
    estimate_messages_tokens,
    estimate_tokens,
)


def test_budget_reserves_until_the_minute_is_spent(clock) -> None:
    budget = TokenBudget(tokens_per_minute=1000, clock=clock)
    assert budget.try_reserve(600)
    assert not budget.try_reserve(500)
    assert budget.remaining == 400
    assert budget.try_reserve(400)
    assert budget.remaining == 0


def test_budget_commit_books_the_actual_usage(clock) -> None:
    budget = TokenBudget(tokens_per_minute=1000, clock=clock)
    assert budget.try_reserve(600)
    budget.commit(250, reserved=600)
    assert budget.remaining == 750
    assert budget.try_reserve(700)
    budget.release(700)
    assert budget.remaining == 750


def test_budget_window_slides(clock) -> None:
    budget = TokenBudget(tokens_per_minute=1000, clock=clock)
    assert budget.try_reserve(600)
    clock.advance(30)
    assert budget.try_reserve(400)
    clock.advance(31)  # the first reservation is now older than 60 s
    assert budget.remaining == 600
    clock.advance(30)
    assert budget.remaining == 1000


def test_restaurant_cap_is_a_pure_function_of_spent_estimate_and_cap() -> None:
    assert not would_exceed(spent_micro_usd=900, estimate_micro_usd=100, cap_micro_usd=1000)
    assert would_exceed(spent_micro_usd=901, estimate_micro_usd=100, cap_micro_usd=1000)
    assert not would_exceed(spent_micro_usd=10**12, estimate_micro_usd=1, cap_micro_usd=None)


def test_restaurant_daily_spend_is_per_restaurant_and_day() -> None:
    spend = RestaurantDailySpend()
    day = utc_day(1736080000)  # 2025-01-05
    assert day == "2025-01-05"
    spend.add("r1", day, 700)
    assert spend.spent("r1", day) == 700
    assert spend.spent("r2", day) == 0
    assert spend.spent("r1", "2025-01-06") == 0
    assert spend.would_exceed("r1", day, estimate_micro_usd=400, cap_micro_usd=1000)
    assert not spend.would_exceed("r2", day, estimate_micro_usd=400, cap_micro_usd=1000)


def enrichment(label: str = "POSITIVE") -> Enrichment:
    return Enrichment(label=Sentiment(label), score=0.5, categories=("other",), reply_draft="ok")


def test_cache_key_normalises_text_and_includes_model_and_prompt_version() -> None:
    assert normalise_text("  Ótimo!\n\n Muito   BOM ") == "ótimo! muito bom"
    key = cache_key("Ótimo!  bom", model="m1", prompt_version="v1")
    assert key == cache_key("  ótimo! bom\n", model="m1", prompt_version="v1")
    assert key != cache_key("Ótimo!  bom", model="m2", prompt_version="v1")
    assert key != cache_key("Ótimo!  bom", model="m1", prompt_version="v2")
    assert len(key) == 64


def test_cache_is_a_bounded_lru_with_counters() -> None:
    cache = ResultCache(max_entries=2)
    cache.put("a", enrichment())
    cache.put("b", enrichment("NEGATIVE"))
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("c", enrichment())
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 1)


def test_prices_convert_once_to_integer_micro_dollars() -> None:
    prices = Prices.from_usd_per_mtok(in_usd_per_mtok=0.15, out_usd_per_mtok=0.60)
    assert prices == Prices(in_micro_usd_per_mtok=150_000, out_micro_usd_per_mtok=600_000)
    assert cost_micro_usd(tokens_in=1000, tokens_out=500, prices=prices) == 450
    # Each side rounds up to a whole micro-dollar: never under-report the bill.
    assert cost_micro_usd(tokens_in=1, tokens_out=1, prices=prices) == 2
    assert cost_micro_usd(tokens_in=0, tokens_out=0, prices=prices) == 0
    big = Prices.from_usd_per_mtok(in_usd_per_mtok=2.5, out_usd_per_mtok=10.0)
    assert cost_micro_usd(tokens_in=1_000_000, tokens_out=1_000_000, prices=big) == 12_500_000
    with pytest.raises(ValueError):
        Prices.from_usd_per_mtok(in_usd_per_mtok=-1, out_usd_per_mtok=0)


def test_token_estimates_use_four_chars_per_token() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc") == 1
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_messages_tokens([{"role": "user", "content": "abcd" * 10}]) == 14


@pytest.mark.parametrize(
    ("total", "weights"),
    [(100, [1, 1, 1]), (7, [5, 0, 2]), (0, [1, 2]), (5, [0, 0]), (1_000_003, [3, 7, 11, 13])],
)
def test_apportion_parts_sum_exactly_to_the_total(total: int, weights: list[int]) -> None:
    parts = apportion(total, weights)
    assert sum(parts) == total
    assert all(p >= 0 for p in parts)
