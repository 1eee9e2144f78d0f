"""enrich_batch against the real simulator: redaction, cache, budgets, split-and-retry, fallback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.llm.batch import EnrichRequest, EnrichStatus, enrich_batch, fallback_outcome
from agents.llm.breaker import CircuitBreaker
from agents.llm.budget import TokenBudget
from agents.llm.cache import ResultCache
from agents.llm.heuristic import HEURISTIC_MODEL
from agents.llm.prompt import extract_reviews


def request(ref: str, text: str | None = None, **overrides: Any) -> EnrichRequest:
    values: dict[str, Any] = {
        "ref": ref,
        "restaurant_id": "rest-1",
        "text": text if text is not None else f"review {ref}: comida boa e entrega rápida",
        "rating": 4,
    }
    values.update(overrides)
    return EnrichRequest(**values)


def sent_refs(body: dict[str, Any]) -> list[str]:
    return [item["ref"] for item in extract_reviews(body["messages"][-1]["content"])]


async def test_all_enriched_in_sub_batches_with_exact_cost_shares(make_client, simulator) -> None:
    client = make_client()
    requests = [request(f"r{i}") for i in range(5)]
    outcomes = await enrich_batch(requests, client=client, batch_size=2, concurrency=2)
    assert [o.ref for o in outcomes] == [r.ref for r in requests]
    assert {o.status for o in outcomes} == {EnrichStatus.ENRICHED}
    assert sorted(len(sent_refs(b)) for b in simulator.requests) == [1, 2, 2]
    first_batch = [o for o in outcomes if o.ref in ("r0", "r1")]
    assert all(o.tokens_in > 0 and o.cost_micro_usd > 0 for o in first_batch)
    assert all(o.model == "reviewpulse-sim-1" and o.enrichment is not None for o in outcomes)


async def test_pii_never_reaches_the_simulator(make_client, simulator) -> None:
    pii = [
        "maria.souza@example.com",
        "(11) 98765-4321",
        "+55 21 99876 5432",
        "123.456.789-09",
        "12.345.678/0001-95",
        "4111 1111 1111 1111",
    ]
    text = "Chegou fria. Me chame: " + ", ".join(pii)
    outcomes = await enrich_batch([request("p1", text)], client=make_client())
    assert outcomes[0].status is EnrichStatus.ENRICHED
    assert outcomes[0].pii_redacted == len(pii)
    recorded = json.dumps(simulator.requests, ensure_ascii=False)
    for value in pii:
        assert value not in recorded
    assert "[EMAIL]" in recorded and "[CARD]" in recorded


async def test_wrong_count_keeps_valid_results_and_re_asks_only_the_missing(
    make_client, simulator
) -> None:
    simulator.script("wrong_count")  # drops the last result of the first answer
    requests = [request(f"r{i}") for i in range(4)]
    outcomes = await enrich_batch(requests, client=make_client(), batch_size=4)
    assert {o.status for o in outcomes} == {EnrichStatus.ENRICHED}
    assert [sent_refs(b) for b in simulator.requests] == [["r0", "r1", "r2", "r3"], ["r3"]]
    # r3 paid a share of both calls.
    assert outcomes[3].tokens_in > outcomes[0].tokens_in


async def test_invalid_json_splits_the_batch_in_halves(make_client, simulator) -> None:
    simulator.script("invalid_json")
    requests = [request(f"r{i}") for i in range(4)]
    outcomes = await enrich_batch(requests, client=make_client(), batch_size=4)
    assert {o.status for o in outcomes} == {EnrichStatus.ENRICHED}
    sent = sorted(sent_refs(b) for b in simulator.requests)
    assert sent == [["r0", "r1"], ["r0", "r1", "r2", "r3"], ["r2", "r3"]]


async def test_single_review_that_stays_malformed_falls_back_to_heuristic(
    make_client, simulator
) -> None:
    simulator.script("bad_label", "bad_label")
    outcomes = await enrich_batch(
        [request("a", "achei um cabelo"), request("b")], client=make_client(), batch_size=2
    )
    by_ref = {o.ref: o for o in outcomes}
    assert by_ref["a"].status is EnrichStatus.FALLBACK
    assert by_ref["a"].model == HEURISTIC_MODEL
    assert by_ref["a"].enrichment is not None and by_ref["a"].enrichment.label == "CRITICAL"
    assert "VERY_POSITIVE" in (by_ref["a"].error or "")
    assert by_ref["b"].status is EnrichStatus.ENRICHED
    assert len(simulator.requests) == 2


async def test_transport_failure_after_retries_is_transient(make_client, simulator) -> None:
    simulator.script("500", "500")
    outcomes = await enrich_batch(
        [request("a"), request("b")], client=make_client(max_retries=1), batch_size=2
    )
    for outcome in outcomes:
        assert outcome.status is EnrichStatus.TRANSIENT_FAILURE
        assert outcome.enrichment is None
        assert "LLMServerError" in (outcome.error or "")
    # Once the agent's retry attempts are spent it falls back explicitly.
    last = fallback_outcome(request("a"), reason="retries exhausted")
    assert last.status is EnrichStatus.FALLBACK and last.enrichment is not None


async def test_open_breaker_marks_reviews_transient_with_retry_after(
    make_client, simulator, clock
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=20.0, clock=clock)
    breaker.record_failure()
    outcomes = await enrich_batch([request("a")], client=make_client(breaker=breaker))
    assert outcomes[0].status is EnrichStatus.TRANSIENT_FAILURE
    assert outcomes[0].retry_after_s == pytest.approx(20.0)
    assert simulator.requests == []


async def test_over_token_budget_uses_heuristic_budget_skipped(
    make_client, simulator, clock
) -> None:
    budget = TokenBudget(tokens_per_minute=50, clock=clock)
    outcomes = await enrich_batch([request("a")], client=make_client(), token_budget=budget)
    assert outcomes[0].status is EnrichStatus.BUDGET_SKIPPED
    assert outcomes[0].enrichment is not None
    assert simulator.requests == []


async def test_token_budget_is_committed_with_actual_usage(make_client, clock) -> None:
    budget = TokenBudget(tokens_per_minute=100_000, clock=clock)
    outcomes = await enrich_batch([request("a")], client=make_client(), token_budget=budget)
    assert budget.used == outcomes[0].tokens_in + outcomes[0].tokens_out


async def test_restaurant_over_its_daily_cap_is_budget_skipped(make_client, simulator) -> None:
    outcomes = await enrich_batch(
        [request("a", restaurant_id="capped"), request("b", restaurant_id="fine")],
        client=make_client(),
        restaurant_spent_micro_usd={"capped": 1_000},
        restaurant_cap_micro_usd=1_000,
    )
    by_ref = {o.ref: o for o in outcomes}
    assert by_ref["a"].status is EnrichStatus.BUDGET_SKIPPED
    assert "cap" in (by_ref["a"].error or "")
    assert by_ref["b"].status is EnrichStatus.ENRICHED
    assert [sent_refs(b) for b in simulator.requests] == [["b"]]


async def test_cache_hit_skips_the_llm_and_costs_nothing(make_client, simulator) -> None:
    cache = ResultCache(max_entries=10)
    client = make_client()
    await enrich_batch([request("a", "Ótimo!")], client=client, cache=cache)
    outcomes = await enrich_batch([request("b", "  ótimo! ")], client=client, cache=cache)
    assert outcomes[0].status is EnrichStatus.ENRICHED and outcomes[0].cache_hit
    assert outcomes[0].cost_micro_usd == 0
    assert len(simulator.requests) == 1
    assert (cache.hits, cache.misses) == (1, 1)


async def test_same_text_twice_in_a_batch_is_asked_once(make_client, simulator) -> None:
    outcomes = await enrich_batch(
        [request("a", "Muito bom"), request("b", "muito  bom")], client=make_client()
    )
    assert [o.status for o in outcomes] == [EnrichStatus.ENRICHED] * 2
    assert [o.cache_hit for o in outcomes] == [False, True]
    assert [sent_refs(b) for b in simulator.requests] == [["a"]]


async def test_duplicate_refs_are_rejected(make_client) -> None:
    with pytest.raises(ValueError, match="unique"):
        await enrich_batch([request("a"), request("a")], client=make_client())
