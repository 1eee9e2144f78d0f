"""Batch enrichment: redact, cache, budgets, LLM sub-batches, split-and-retry, fallback.

Pure async logic with no Kafka: the enrich agent hands it a batch and gets one outcome
per review, in input order, and decides what to send where. The LLM is an observer, not
a bottleneck (seed 000): every review leaves with an outcome; only a retriable transport
failure yields ``TRANSIENT_FAILURE`` (no enrichment), which the agent routes to the
retry topic and, once attempts are exhausted, turns into :func:`fallback_outcome`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agents.llm.budget import TokenBudget, would_exceed
from agents.llm.cache import ResultCache, cache_key
from agents.llm.client import BatchResult, LLMClient
from agents.llm.errors import LLMError, LLMMalformedOutputError
from agents.llm.labels import Enrichment, ReviewInput
from agents.llm.outcome import EnrichOutcome, EnrichRequest, EnrichStatus, fallback_outcome
from agents.llm.pricing import apportion, cost_micro_usd, estimate_tokens
from agents.llm.prompt import PROMPT_TOKENS_PER_REVIEW_OVERHEAD, estimate_review_tokens
from agents.llm.quotas import GLOBAL, SOURCE_QUOTA_REASON, GroupBudgets
from agents.llm.redact import redact_pii

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Item:
    request: EnrichRequest
    review: ReviewInput  # redacted, as sent to the LLM
    key: str
    pii_redacted: int
    source: str = "*"  # the bounded label of its upstream service (agents.llm.quotas)
    source_reserved: int = 0  # tokens held in its source's quota until its first call books
    tokens_in: int = 0
    tokens_out: int = 0
    cost_micro_usd: int = 0
    latency_ms: float = 0.0
    outcome: EnrichOutcome | None = None
    followers: list[_Item] = field(default_factory=list)


class _Run:
    """State of one ``enrich_batch`` call (kept off the module so calls never share it)."""

    def __init__(
        self, *, client: LLMClient, budget: TokenBudget | None, concurrency: int, batch_size: int,
        quotas: GroupBudgets | None = None,
    ) -> None:
        self.client = client
        self.budget = budget
        self.quotas = quotas
        self.batch_size = batch_size
        self.slots = asyncio.Semaphore(concurrency)

    def _finish(
        self,
        item: _Item,
        status: EnrichStatus,
        enrichment: Enrichment | None,
        *,
        model: str,
        prompt_version: str,
        error: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        item.outcome = EnrichOutcome(
            ref=item.request.ref,
            restaurant_id=item.request.restaurant_id,
            status=status,
            enrichment=enrichment,
            model=model,
            prompt_version=prompt_version,
            tokens_in=item.tokens_in,
            tokens_out=item.tokens_out,
            cost_micro_usd=item.cost_micro_usd,
            latency_ms=item.latency_ms,
            pii_redacted=item.pii_redacted,
            error=error,
            retry_after_s=retry_after_s,
            text=item.review.text,
        )

    def _fallback(self, item: _Item, status: EnrichStatus, reason: str) -> None:
        base = fallback_outcome(item.request, status=status, reason=reason, text=item.review.text)
        self._finish(
            item,
            status,
            base.enrichment,
            model=base.model,
            prompt_version=base.prompt_version,
            error=reason,
        )

    def _account(self, items: list[_Item], call: Any, *, reserved: int) -> None:
        """Book what one call really used (a BatchResult, or the malformed-output error that
        carries the same figures): the budget gets actual tokens, the items their shares."""
        if self.budget is not None:
            self.budget.commit(call.tokens_in + call.tokens_out, reserved=reserved)
        before = [(i.tokens_in + i.tokens_out, i.cost_micro_usd) for i in items]
        self._charge(items, tokens_in=call.tokens_in, tokens_out=call.tokens_out,
                     cost=call.cost_micro_usd, latency_ms=call.latency_ms)
        if self.quotas is not None:
            spent: dict[str, list[int]] = {}
            for item, (tokens0, cost0) in zip(items, before, strict=True):
                row = spent.setdefault(item.source, [0, 0, 0])
                row[0] += item.tokens_in + item.tokens_out - tokens0
                row[1] += item.cost_micro_usd - cost0
                row[2] += item.source_reserved
                item.source_reserved = 0  # a re-ask books its actual use only
            for label, (tokens, cost, held) in spent.items():
                quota = self.quotas.quota(label)
                if quota is not None:
                    quota.commit(tokens, reserved=held)
                if self.quotas.on_spend is not None:
                    self.quotas.on_spend(label, tokens, cost)

    def _release_sources(self, items: list[_Item]) -> None:
        """Give back the source reservations of items whose call spent nothing."""
        if self.quotas is None:
            return
        for item in items:
            quota = self.quotas.quota(item.source)
            if quota is not None and item.source_reserved:
                quota.release(item.source_reserved)
            item.source_reserved = 0

    @staticmethod
    def _charge(
        items: list[_Item], *, tokens_in: int, tokens_out: int, cost: int, latency_ms: float
    ) -> None:
        weights = [
            estimate_tokens(i.review.text) + PROMPT_TOKENS_PER_REVIEW_OVERHEAD for i in items
        ]
        for item, t_in, t_out, c in zip(
            items,
            apportion(tokens_in, weights),
            apportion(tokens_out, [1] * len(items)),
            apportion(cost, weights),
            strict=True,
        ):
            item.tokens_in += t_in
            item.tokens_out += t_out
            item.cost_micro_usd += c
            item.latency_ms += latency_ms

    async def resolve(self, items: list[_Item]) -> None:
        """Enrich ``items`` with one call; on a malformed answer keep the valid part and
        re-ask for the rest in halves, down to single reviews, which fall back."""
        # The prompt is shared by this call's reviews, not by a full batch: a call of one
        # review pays all of it (estimating it over batch_size let a trickle pass budgets).
        reserved = sum(
            sum(estimate_review_tokens(i.review, batch_size=len(items))) for i in items
        )
        if self.budget is not None and not self.budget.try_reserve(reserved):
            self._release_sources(items)
            if self.quotas is not None:
                self.quotas.watch(GLOBAL, refused=True)
            for item in items:
                self._fallback(item, EnrichStatus.BUDGET_SKIPPED, "global token budget exhausted")
            return
        if self.quotas is not None:
            self.quotas.watch(GLOBAL)
        try:
            async with self.slots:
                result: BatchResult = await self.client.complete_batch([i.review for i in items])
        except LLMMalformedOutputError as exc:
            self._account(items, exc, reserved=reserved)
            model = exc.model or self.client.model
            for item in items:
                if item.request.ref in exc.valid_results:
                    self._finish(
                        item,
                        EnrichStatus.ENRICHED,
                        exc.valid_results[item.request.ref],
                        model=model,
                        prompt_version=self.client.prompt_version,
                    )
            rest = [i for i in items if i.outcome is None]
            log.info(
                "llm answer malformed, re-asking: batch=%d failed=%d reason=%s",
                len(items),
                len(rest),
                exc,
            )
            if len(items) == 1:
                for item in rest:
                    self._fallback(item, EnrichStatus.FALLBACK, f"malformed LLM output: {exc}")
            elif len(rest) == 1:
                await self.resolve(rest)
            elif rest:
                half = len(rest) // 2
                await asyncio.gather(self.resolve(rest[:half]), self.resolve(rest[half:]))
            return
        except LLMError as exc:
            if self.budget is not None:
                self.budget.release(reserved)
            self._release_sources(items)
            for item in items:
                if exc.retriable:
                    self._finish(
                        item,
                        EnrichStatus.TRANSIENT_FAILURE,
                        None,
                        model=self.client.model,
                        prompt_version=self.client.prompt_version,
                        error=f"{type(exc).__name__}: {exc}",
                        retry_after_s=exc.retry_after_s,
                    )
                else:
                    self._fallback(item, EnrichStatus.FALLBACK, f"{type(exc).__name__}: {exc}")
            return
        self._account(items, result, reserved=reserved)
        for item in items:
            self._finish(
                item,
                EnrichStatus.ENRICHED,
                result.results[item.request.ref],
                model=result.model,
                prompt_version=result.prompt_version,
            )


async def enrich_batch(
    requests: Sequence[EnrichRequest],
    *,
    client: LLMClient,
    cache: ResultCache | None = None,
    token_budget: TokenBudget | None = None,
    quotas: GroupBudgets | None = None,
    restaurant_spent_micro_usd: Mapping[str, int] | None = None,
    restaurant_cap_micro_usd: int | None = None,
    batch_size: int = 10,  # seed 000 §4.3: BATCH_SIZE = 10
    concurrency: int = 2,
    reserve: bool = False,
) -> list[EnrichOutcome]:
    """Enrich a batch; one :class:`EnrichOutcome` per request, in input order.

    ``restaurant_spent_micro_usd`` is today's spend per restaurant (the worker's daily
    cost table); a review whose estimated cost would pass ``restaurant_cap_micro_usd``
    is ``BUDGET_SKIPPED``. The caller adds each outcome's ``cost_micro_usd`` back.
    With ``reserve`` the mapping is the caller's running ledger (a MutableMapping) and
    the estimates of the reviews sent are added to it before the first await, so calls
    in flight together never spend the same headroom twice.

    ``quotas`` holds the per-source quotas: a review whose estimate does not fit in its
    source's quota is ``BUDGET_SKIPPED`` with reason ``source_quota`` (other sources keep
    the LLM); ``token_budget`` is then normally ``quotas.global_budget``.
    """
    refs = [r.ref for r in requests]
    if len(set(refs)) != len(refs):
        raise ValueError("request refs in one batch must be unique")
    if batch_size < 1 or concurrency < 1:
        raise ValueError("batch_size and concurrency must be at least 1")
    run = _Run(client=client, budget=token_budget, concurrency=concurrency, batch_size=batch_size,
               quotas=quotas)
    items: list[_Item] = []
    leaders: dict[str, _Item] = {}
    for request in requests:
        redacted = redact_pii(request.text)
        review = ReviewInput(request.ref, redacted.text, request.rating, request.language)
        key = cache_key(redacted.text, model=client.model, prompt_version=client.prompt_version)
        item = _Item(request=request, review=review, key=key, pii_redacted=redacted.total,
                     source=quotas.labels.label(request.source) if quotas is not None else "*")
        items.append(item)
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            run._finish(
                item,
                EnrichStatus.ENRICHED,
                cached,
                model=client.model,
                prompt_version=client.prompt_version,
            )
            item.outcome = _with(item.outcome, cache_hit=True)
        elif key in leaders:  # same normalised text twice in one batch: ask once
            leaders[key].followers.append(item)
        else:
            leaders[key] = item

    to_send: list[_Item] = []
    projected: Any = (restaurant_spent_micro_usd if reserve and restaurant_spent_micro_usd is not None
                      else dict(restaurant_spent_micro_usd or {}))
    call_size = max(min(batch_size, len(leaders)), 1)  # the reviews a call shares its prompt with
    reserved, refused = {}, {}  # sources whose quota this pass drew on / refused (ordered sets)
    for item in leaders.values():
        t_in, t_out = estimate_review_tokens(item.review, batch_size=batch_size)
        quota_estimate = sum(estimate_review_tokens(item.review, batch_size=call_size))
        estimate = cost_micro_usd(tokens_in=t_in, tokens_out=t_out, prices=client.prices)
        rid = item.request.restaurant_id
        spent = projected.get(rid, 0)
        if would_exceed(
            spent_micro_usd=spent,
            estimate_micro_usd=estimate,
            cap_micro_usd=restaurant_cap_micro_usd,
        ):
            run._fallback(item, EnrichStatus.BUDGET_SKIPPED, "restaurant daily cost cap reached")
        elif (quota := quotas.quota(item.source) if quotas is not None else None) is not None \
                and not quota.try_reserve(quota_estimate):
            run._fallback(item, EnrichStatus.BUDGET_SKIPPED, SOURCE_QUOTA_REASON)
            refused[item.source] = True
            if quotas is not None and quotas.on_skip is not None:
                quotas.on_skip(item.source)
        else:
            if quota is not None:
                reserved[item.source] = True
            item.source_reserved = quota_estimate if quota is not None else 0
            projected[rid] = spent + estimate
            to_send.append(item)
    if quotas is not None:  # once per source and pass, not per review: warnings, then refusals
        for label in reserved:
            quotas.watch(label)
        for label in refused:
            quotas.watch(label, refused=True)

    chunks = [to_send[i : i + batch_size] for i in range(0, len(to_send), batch_size)]
    await asyncio.gather(*(run.resolve(chunk) for chunk in chunks))

    for leader in leaders.values():
        assert leader.outcome is not None
        if leader.outcome.status is EnrichStatus.ENRICHED and cache is not None:
            assert leader.outcome.enrichment is not None
            cache.put(leader.key, leader.outcome.enrichment)
        for follower in leader.followers:
            if leader.outcome.status in (EnrichStatus.FALLBACK, EnrichStatus.BUDGET_SKIPPED):
                # The heuristic reads the rating too: each follower gets its own.
                follower.outcome = fallback_outcome(
                    follower.request,
                    status=leader.outcome.status,
                    reason=leader.outcome.error,
                    pii_redacted=follower.pii_redacted,
                    text=follower.review.text,
                )
                continue
            follower.outcome = _with(
                leader.outcome,
                ref=follower.request.ref,
                restaurant_id=follower.request.restaurant_id,
                cache_hit=leader.outcome.status is EnrichStatus.ENRICHED,
                tokens_in=0,
                tokens_out=0,
                cost_micro_usd=0,
                latency_ms=0.0,
                pii_redacted=follower.pii_redacted,
                text=follower.review.text,
            )
    return [item.outcome for item in items if item.outcome is not None]


def _with(outcome: EnrichOutcome | None, **changes: object) -> EnrichOutcome:
    assert outcome is not None
    return replace(outcome, **changes)
