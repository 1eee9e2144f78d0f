"""Quotas per upstream service (issue 32.1) and the group share of budgets (32.2):
a flooding source is BUDGET_SKIPPED (source_quota) while the others keep the LLM, and a
producer's source never becomes an unbounded metric label."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.llm.batch import EnrichRequest, EnrichStatus, enrich_batch
from agents.llm.labels import ReviewInput
from agents.llm.prompt import estimate_review_tokens
from agents.llm.quotas import (
    DEFAULT_SOURCE,
    LABEL_MAX_CHARS,
    SOURCE_QUOTA_REASON,
    GroupBudgets,
    SourceLabels,
    parse_source_budgets,
    share_of,
    source_reason,
)
from agents.llm.records import enrich_request, enriched_record
from streams.settings import load_settings
from tests.records import review_created


def request(ref: str, source: str, **overrides: Any) -> EnrichRequest:
    values: dict[str, Any] = {"ref": ref, "restaurant_id": "rest-1",
                              "text": f"review {ref}: comida boa e entrega rápida", "rating": 4,
                              "source": source}
    values.update(overrides)
    return EnrichRequest(**values)


def estimate(req: EnrichRequest, batch_size: int = 10) -> int:
    return sum(estimate_review_tokens(ReviewInput(req.ref, req.text, req.rating, req.language),
                                      batch_size=batch_size))


def test_parse_source_budgets() -> None:
    assert parse_source_budgets("api.review=400000, batch.import=50000,*=100000") == {
        "api.review": 400_000, "batch.import": 50_000, "*": 100_000}
    assert parse_source_budgets("") == {}
    for bad in ("api.review", "api.review=-1", "api.review=x", "a=1,a=2", "bad name=3", "=5"):
        with pytest.raises(ValueError):
            parse_source_budgets(bad)


def test_settings_refuse_a_malformed_quota_list() -> None:
    assert load_settings(source_token_budgets="api.review=10,*=5").source_token_budget_map == {
        "api.review": 10, "*": 5}
    with pytest.raises(Exception, match="source_token_budgets"):
        load_settings(source_token_budgets="api.review=lots")


@given(st.one_of(st.none(), st.integers(), st.text(max_size=300), st.binary(max_size=20)))
@settings(max_examples=300)
def test_any_source_maps_to_a_listed_label_or_the_default_and_is_counted(raw: Any) -> None:
    """Malformed, empty, overlong or unlisted: the default bucket, counted with its reason."""
    seen: list[str] = []
    labels = SourceLabels(["api.review", "batch.import"], on_defaulted=seen.append)
    label = labels.label(raw)
    assert label in labels.labels  # the label set is bounded by configuration
    if raw in ("api.review", "batch.import"):
        assert label == raw and not seen
    else:
        assert label == DEFAULT_SOURCE
        assert seen == [source_reason(raw) or "unlisted"]
        assert seen[0] in ("unlisted", "empty", "malformed", "overlong")


def test_reasons_of_defaulted_sources() -> None:
    assert source_reason("api.review") is None
    assert source_reason("") == "empty"
    assert source_reason(None) == "malformed"
    assert source_reason("api review\n") == "malformed"
    assert source_reason("a" * (LABEL_MAX_CHARS + 1)) == "overlong"


async def test_the_flooding_source_is_skipped_and_the_quiet_one_keeps_the_llm(make_client) -> None:
    flood = [request(f"f{i}", "batch.import") for i in range(20)]
    quiet = [request(f"q{i}", "api.review") for i in range(3)]
    per_review = estimate(flood[0])
    quotas = GroupBudgets(global_per_minute=1_000_000,
                          source_per_minute={"batch.import": per_review * 2, "api.review": 100_000})
    skipped: list[str] = []
    quotas.on_skip = skipped.append
    outcomes = await enrich_batch([*flood, *quiet], client=make_client(), quotas=quotas,
                                  token_budget=quotas.global_budget)
    by_ref = {o.ref: o for o in outcomes}
    assert all(by_ref[r.ref].status is EnrichStatus.ENRICHED for r in quiet)
    flood_status = [by_ref[r.ref].status for r in flood]
    assert flood_status.count(EnrichStatus.ENRICHED) == 2
    assert all(by_ref[r.ref].error == SOURCE_QUOTA_REASON for r in flood[2:])
    assert skipped == ["batch.import"] * 18
    # What was spent was booked against each source's quota (actual, not the estimate).
    assert 0 < quotas.sources["batch.import"].used <= per_review * 2


async def test_unlisted_sources_share_the_default_quota_and_unquoted_sources_are_free(make_client) -> None:
    reqs = [request("a", "svc.one"), request("b", ""), request("c", "api.review")]
    quotas = GroupBudgets(global_per_minute=1_000_000,
                          source_per_minute={"*": estimate(reqs[0], batch_size=3), "api.review": 100_000})
    outcomes = await enrich_batch(reqs, client=make_client(), quotas=quotas)
    assert [o.status for o in outcomes] == [EnrichStatus.ENRICHED, EnrichStatus.BUDGET_SKIPPED,
                                            EnrichStatus.ENRICHED]
    free = GroupBudgets(global_per_minute=1_000_000, source_per_minute={"api.review": 1})
    outcomes = await enrich_batch([request("x", "svc.other")], client=make_client(), quotas=free)
    assert outcomes[0].status is EnrichStatus.ENRICHED


async def test_a_failed_call_gives_the_source_quota_back(make_client, simulator) -> None:
    simulator.script("500", "500", "500", "500")
    req = request("r", "api.review")
    quotas = GroupBudgets(global_per_minute=1_000_000, source_per_minute={"api.review": 100_000})
    outcomes = await enrich_batch([req], client=make_client(max_retries=0), quotas=quotas,
                                  token_budget=quotas.global_budget)
    assert outcomes[0].status is EnrichStatus.TRANSIENT_FAILURE
    assert quotas.sources["api.review"].used == 0


def test_share_scales_every_budget_and_shrinking_keeps_what_was_spent() -> None:
    budgets = GroupBudgets(global_per_minute=1000, source_per_minute={"a": 400, "*": 100})
    budgets.set_share(share_of(1, 4))
    assert budgets.global_budget.tokens_per_minute == 250
    assert budgets.sources["a"].tokens_per_minute == 100
    assert budgets.sources["*"].tokens_per_minute == 25
    budgets.set_share(1.0)
    assert budgets.global_budget.try_reserve(600)
    budgets.set_share(0.5)  # another worker took half: this one is already past its share
    assert budgets.global_budget.remaining == 0 and not budgets.global_budget.try_reserve(1)
    assert share_of(0, 4) == 0 and share_of(4, 4) == 1 and share_of(9, 4) == 1


def test_reviews_enriched_records_the_source_and_the_budget_reason() -> None:
    review = review_created("q", restaurant_id="rest-1", source="batch.import")
    req = enrich_request(review)
    assert req.source == "batch.import"
    from agents.llm.outcome import fallback_outcome

    outcome = fallback_outcome(req, status=EnrichStatus.BUDGET_SKIPPED, reason=SOURCE_QUOTA_REASON)
    record = enriched_record(review, outcome, attempts=1, enriched_at_ms=review["occurred_at"] + 5)
    assert record["source"] == "batch.import" and record["budget_reason"] == "source_quota"
    ok = enriched_record(review, fallback_outcome(req), attempts=1, enriched_at_ms=review["occurred_at"])
    assert ok["budget_reason"] is None
