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

Before a budget runs out it warns: :meth:`GroupBudgets.watch` raises a :class:`QuotaAlert`,
WARNING once a budget's use in the sliding minute reaches ``warn_share`` of this worker's
share of it, CRITICAL when it refused a reservation; each at most once a minute per budget
and severity (the runtime sends them to ``budget.alerts``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agents.llm.budget import WINDOW_S, TokenBudget
from streams.sources import (  # noqa: F401  (re-exported: the quota code's vocabulary)
    DEFAULT_SOURCE,
    DEFAULTED_REASONS,
    LABEL_MAX_CHARS,
    parse_source_budgets,
    source_reason,
)

logger = logging.getLogger(__name__)

SOURCE_QUOTA_REASON = "source_quota"
GLOBAL = "global"  # the global budget's name in alerts (sources are named by their label)
WARNING, CRITICAL = "WARNING", "CRITICAL"


@dataclass(frozen=True)
class QuotaAlert:
    """A budget crossed its warning share (WARNING) or refused a reservation (CRITICAL)."""

    scope: str  # "SOURCE" or "GLOBAL"
    name: str  # the source's label ("*" for every unlisted source), or "global"
    severity: str
    used_tokens: int  # booked in this worker's sliding minute
    limit_tokens: int  # this worker's share of the group figure
    group_limit_tokens: int
    share: float

    def record(self, *, now_ms: int) -> dict[str, Any]:
        """The ``BudgetAlert`` Avro record (timestamps as int ms)."""
        minute = now_ms - now_ms % 60_000
        what = "the global token budget" if self.scope == "GLOBAL" else f"source {self.name}'s token quota"
        used = self.used_tokens / max(self.limit_tokens, 1)
        happened = ("refused a call: its reviews get the heuristic (BUDGET_SKIPPED)"
                    if self.severity == CRITICAL else f"is {used:.0%} used")
        return {
            "alert_id": f"{self.scope}:{self.name}:{self.severity}:{minute}",
            "scope": self.scope, "name": self.name, "severity": self.severity,
            "used_tokens": self.used_tokens, "limit_tokens": self.limit_tokens,
            "group_limit_tokens": self.group_limit_tokens, "share": self.share,
            "window_start": minute, "window_end": minute + 60_000,
            "message": (f"This worker's share of {what} ({self.limit_tokens} of {self.group_limit_tokens} "
                        f"tokens a minute) {happened}."),
            "emitted_at": now_ms,
        }


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
                 on_skip: Callable[[str], None] | None = None,
                 warn_share: float = 0.8,
                 on_alert: Callable[[QuotaAlert], None] | None = None) -> None:
        self.on_spend = on_spend  # (label, tokens, cost_micro_usd) of each call's share
        self.on_skip = on_skip  # (label) of each review BUDGET_SKIPPED for its source's quota
        self.warn_share, self.on_alert = warn_share, on_alert
        self._clock = clock
        self._alerted: dict[tuple[str, str], float] = {}  # (name, severity) -> when
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

    def watch(self, name: str, *, refused: bool = False) -> None:
        """After a reservation against budget ``name`` (a source label or :data:`GLOBAL`):
        a WARNING once its use reaches ``warn_share`` of it, a CRITICAL when it ``refused``;
        each at most once a minute per budget and severity, so a flood pages once a minute,
        not once a review."""
        if self.on_alert is None:
            return
        if name == GLOBAL:
            budget, figure, scope = self.global_budget, self.global_figure, "GLOBAL"
        elif (quota := self.sources.get(name)) is not None:
            budget, figure, scope = quota, self.source_figures[name], "SOURCE"
        else:
            return
        used, limit = budget.used, budget.tokens_per_minute
        if refused:
            severity = CRITICAL
        elif limit and used >= self.warn_share * limit:
            severity = WARNING
        else:
            return
        now, key = self._clock(), (name, severity)
        last = self._alerted.get(key)
        if last is not None and now - last < WINDOW_S:
            return
        self._alerted[key] = now
        try:
            self.on_alert(QuotaAlert(scope=scope, name=name, severity=severity, used_tokens=used,
                                     limit_tokens=limit, group_limit_tokens=figure, share=self.share))
        except Exception:  # an alert is beside the flow: it never fails an enrichment
            logger.exception("Raising the %s alert of budget %s failed", severity, name)
