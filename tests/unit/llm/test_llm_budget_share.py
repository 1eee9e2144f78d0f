"""The runtime's share of the group budgets follows its assignment (issue 32.2)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import NamedTuple

from agents.llm.quotas import GroupBudgets
from streams import metrics
from streams.runtime import Runtime

BY_RESTAURANT = "reviewpulse-by-restaurant"


def _runtime(partitions: int) -> Runtime:
    app = SimpleNamespace(
        settings=SimpleNamespace(topic_partitions=partitions),
        topics_=SimpleNamespace(by_restaurant=SimpleNamespace(get_topic_name=lambda: BY_RESTAURANT)))
    runtime = Runtime(app)  # type: ignore[arg-type]
    budgets = GroupBudgets(global_per_minute=1000, source_per_minute={"api.review": 400})
    runtime.llm = SimpleNamespace(budgets=budgets, report_budgets=lambda: None)  # type: ignore[assignment]
    return runtime


class TP(NamedTuple):
    topic: str
    partition: int


def tp(topic: str, partition: int) -> TP:
    return TP(topic, partition)


def test_the_share_counts_only_owned_by_restaurant_partitions() -> None:
    runtime = _runtime(4)
    # Input and changelog partitions are not the stage's work: they do not count.
    runtime.share_budgets({tp(BY_RESTAURANT, 0), tp("reviews.created", 0), tp("reviews.created", 1),
                           tp("reviewpulse-panes-changelog", 2)})
    budgets = runtime.llm.budgets
    assert budgets.share == 0.25 and metrics.BUDGET_SHARE._value.get() == 0.25
    assert budgets.global_budget.tokens_per_minute == 250
    assert budgets.sources["api.review"].tokens_per_minute == 100
    runtime.share_budgets({tp(BY_RESTAURANT, p) for p in range(4)})
    assert budgets.global_budget.tokens_per_minute == 1000
    runtime.share_budgets(set())  # a worker that owns nothing spends nothing
    assert budgets.global_budget.tokens_per_minute == 0 and not budgets.global_budget.try_reserve(1)
