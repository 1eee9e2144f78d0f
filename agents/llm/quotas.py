"""Token quotas per upstream service (``metadata.source``) and the group share of budgets.

Seed 000 §4.4/§5.2: an upstream service that floods the topic ("100k events a minute")
must not spend the budget every other service relies on: "token budget + quotas per
service". ``REVIEWPULSE_SOURCE_TOKEN_BUDGETS`` names a per-minute token quota for each
listed source and one for everything else (``*``).

Sources come from producers, so they are never trusted as metric labels or as keys of an
unbounded map: a source that is listed keeps its name, anything else (not listed, empty,
malformed, longer than :data:`LABEL_MAX_CHARS`) is the default bucket ``*``, which all
unlisted sources share, and is counted in ``reviewpulse_source_defaulted_total{reason}``.
The label set is therefore the listed sources plus ``*``: bounded by configuration.

Every figure (the global budget and each quota) is for the whole consumer group; a worker
enforces ``figure × share``, its share being the partitions of the by-restaurant topic it
owns out of all of them (:meth:`GroupBudgets.set_share`, called on every rebalance).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agents.llm.budget import TokenBudget
from streams.sources import (  # noqa: F401  (re-exported: the quota code's vocabulary)
    DEFAULT_SOURCE,
    DEFAULTED_REASONS,
    LABEL_MAX_CHARS,
    parse_source_budgets,
    source_reason,
)

SOURCE_QUOTA_REASON = "source_quota"


class SourceLabels:
    """Maps a producer's source to its bounded label: itself when listed, else ``*``."""

    def __init__(self, listed: Iterable[str], *, on_defaulted: Callable[[str], None] | None = None) -> None:
        self.listed = frozenset(s for s in listed if s != DEFAULT_SOURCE)
        self._on_defaulted = on_defaulted

    def label(self, raw: Any) -> str:
        if isinstance(raw, str) and raw in self.listed:
            return raw
        if self._on_defaulted is not None:
            self._on_defaulted(source_reason(raw) or "unlisted")
        return DEFAULT_SOURCE

    @property
    def labels(self) -> tuple[str, ...]:
        return (*sorted(self.listed), DEFAULT_SOURCE)


def share_of(owned: int, total: int) -> float:
    """The share of a group budget one worker enforces (0 when it owns nothing)."""
    if total <= 0:
        return 1.0
    return min(max(owned, 0), total) / total


class GroupBudgets:
    """The global token budget and the per-source quotas of one worker, each the worker's
    share of a figure for the whole group.

    A source with no quota of its own and no ``*`` entry is not limited (only the global
    budget applies). On a share change the tokens already booked in the sliding minute stay
    booked, so a worker whose share shrinks stops at once; one whose share grows may spend
    the difference at once, which is how far past the figure a fleet goes in the minute
    after a rebalance (README, "Cost guardrails").
    """

    def __init__(self, *, global_per_minute: int, source_per_minute: Mapping[str, int] | None = None,
                 share: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 on_defaulted: Callable[[str], None] | None = None,
                 on_spend: Callable[[str, int, int], None] | None = None,
                 on_skip: Callable[[str], None] | None = None) -> None:
        self.on_spend = on_spend  # (label, tokens, cost_micro_usd) of each call's share
        self.on_skip = on_skip  # (label) of each review BUDGET_SKIPPED for its source's quota
        self.global_figure = global_per_minute
        self.source_figures = dict(source_per_minute or {})
        self.labels = SourceLabels(self.source_figures, on_defaulted=on_defaulted)
        self.share = share
        self.global_budget = TokenBudget(tokens_per_minute=max(global_per_minute, 1), clock=clock)
        self.sources = {name: TokenBudget(tokens_per_minute=max(figure, 1), clock=clock)
                        for name, figure in self.source_figures.items()}
        self.set_share(share)

    def set_share(self, share: float) -> None:
        """Scale every budget to ``share`` of its group figure (on each rebalance)."""
        self.share = min(max(share, 0.0), 1.0)
        self.global_budget.tokens_per_minute = int(self.global_figure * self.share)
        for name, budget in self.sources.items():
            budget.tokens_per_minute = int(self.source_figures[name] * self.share)

    def quota(self, label: str) -> TokenBudget | None:
        """The quota a source label answers to (None: no quota applies)."""
        return self.sources.get(label)
