"""The LLM services a worker shares (client, result cache, token budget, breaker), built
from Settings with their metrics hooks. The batching, split-and-retry and fallback are
:mod:`agents.llm.batch`; the records an outcome becomes, :mod:`agents.llm.records`.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from agents.llm.breaker import BreakerState, CircuitBreaker
from agents.llm.budget import TokenBudget
from agents.llm.cache import ResultCache
from agents.llm.client import LLMClient
from agents.llm.quotas import GroupBudgets
from streams import metrics
from streams.logs import event as log_event
from streams.settings import Settings

# httpcore asks ``import sniffio`` on every request (pool acquire, cancellation shields)
# and falls back to asyncio when it is missing. Not installed, each of those imports
# searches sys.path again: ~37 µs apiece, ~4.5% of the worker's CPU at 1k reviews/s
# (py-spy, bench/README.md). A None entry in sys.modules makes the failure immediate
# (~1 µs). Only when sniffio is truly absent: an installed one is left alone.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

BREAKER_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass
class LLMServices:
    """One client, cache, budgets and breaker per worker process."""

    client: LLMClient
    cache: ResultCache | None
    budgets: GroupBudgets
    breaker: CircuitBreaker

    @property
    def budget(self) -> TokenBudget:
        """The global token budget (this worker's share of the group's)."""
        return self.budgets.global_budget

    def report_budgets(self) -> None:
        """The remaining-token gauges, global and per source."""
        remaining = self.budgets.global_budget.remaining
        metrics.BUDGET_REMAINING.set(remaining)
        for label in self.budgets.labels.labels:  # a source without a quota: the global budget's
            quota = self.budgets.quota(label)
            metrics.SOURCE_QUOTA_REMAINING.labels(label).set(remaining if quota is None else quota.remaining)

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMServices:
        def on_state_change(old: BreakerState, new: BreakerState) -> None:
            metrics.BREAKER_STATE.set(BREAKER_GAUGE[new])
            log_event("breaker_state", old=old.value, new=new.value)

        def on_request(outcome: str, duration_s: float) -> None:
            metrics.LLM_REQUESTS.labels(outcome).inc()
            if outcome != "breaker_open":  # refused before any HTTP request: no duration
                metrics.LLM_DURATION.observe(duration_s)

        def on_retry(outcome: str, delay_s: float) -> None:
            metrics.LLM_RETRIES.inc()

        breaker = CircuitBreaker(
            failure_threshold=settings.breaker_failure_threshold,
            reset_timeout_s=settings.breaker_reset_timeout_s,
            on_state_change=on_state_change,
        )
        client = LLMClient(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key_value(),
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            backoff_base_s=settings.llm_backoff_base_s,
            backoff_max_s=settings.llm_backoff_max_s,
            price_in_usd_per_mtok=settings.llm_price_in_usd_per_mtok,
            price_out_usd_per_mtok=settings.llm_price_out_usd_per_mtok,
            max_concurrency=settings.llm_concurrency,
            breaker=breaker,
            json_schema=settings.llm_json_schema_output,
            on_request=on_request,
            on_retry=on_retry,
        )
        cache = (ResultCache(max_entries=settings.cache_size, max_bytes=settings.cache_max_bytes)
                 if settings.cache_size else None)
        budgets = GroupBudgets(
            global_per_minute=settings.token_budget_per_minute,
            source_per_minute=settings.source_token_budget_map,
            on_defaulted=lambda reason: metrics.SOURCE_DEFAULTED.labels(reason).inc(),
            on_spend=_count_source_spend,
            on_skip=lambda label: metrics.SOURCE_SKIPPED.labels(label).inc())
        for label in budgets.labels.labels:  # series exist (at 0) before their first event
            metrics.SOURCE_TOKENS.labels(label)
            metrics.SOURCE_COST.labels(label)
            metrics.SOURCE_SKIPPED.labels(label)
        services = cls(client=client, cache=cache, breaker=breaker, budgets=budgets)
        services.report_budgets()
        return services


def _count_source_spend(label: str, tokens: int, cost_micro_usd: int) -> None:
    if tokens:
        metrics.SOURCE_TOKENS.labels(label).inc(tokens)
    if cost_micro_usd:
        metrics.SOURCE_COST.labels(label).inc(cost_micro_usd)
