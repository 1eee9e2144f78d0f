"""Budget alerts before and at the cap (issue 32.3): a source's quota and the global budget
warn at their warning share and page when they refuse a call, at most once a minute per
budget and severity, and the record they become is a valid ``BudgetAlert``."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro

from agents.llm.batch import EnrichRequest, EnrichStatus, enrich_batch
from agents.llm.quotas import CRITICAL, GLOBAL, WARNING, GroupBudgets, QuotaAlert
from tests.unit.llm.test_llm_source_quotas import estimate, request

SCHEMA = fastavro.parse_schema(json.loads(
    (Path(__file__).parents[3] / "avro_schemas" / "BudgetAlert.avsc").read_text()))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budgets(clock: Clock, alerts: list[QuotaAlert], **figures: int) -> GroupBudgets:
    return GroupBudgets(global_per_minute=figures.pop("global_", 10_000), source_per_minute=figures,
                        clock=clock, warn_share=0.8, on_alert=alerts.append)


def test_a_quota_warns_once_at_its_share_and_pages_once_when_it_refuses() -> None:
    clock, alerts = Clock(), []
    quotas = budgets(clock, alerts, flood=1000, quiet=1000)
    quota = quotas.sources["flood"]
    assert quota.try_reserve(700)
    quotas.watch("flood")
    assert alerts == []  # 70 %: below the share
    assert quota.try_reserve(150)
    quotas.watch("flood")
    quotas.watch("flood")
    assert [(a.name, a.severity, a.used_tokens, a.limit_tokens) for a in alerts] == [
        ("flood", WARNING, 850, 1000)]
    assert not quota.try_reserve(200)
    quotas.watch("flood", refused=True)
    quotas.watch("flood", refused=True)
    assert [a.severity for a in alerts] == [WARNING, CRITICAL]
    clock.now += 59.9
    quotas.watch("flood", refused=True)
    assert len(alerts) == 2  # a flood pages once a minute, not once a review
    clock.now += 0.2
    quotas.watch("flood", refused=True)
    assert [a.severity for a in alerts] == [WARNING, CRITICAL, CRITICAL]
    quotas.watch("quiet")
    quotas.watch("not-a-quota", refused=True)  # a source without a quota: nothing to say
    assert len(alerts) == 3


def test_the_share_is_of_this_worker_s_part_of_the_group_figure() -> None:
    clock, alerts = Clock(), []
    quotas = budgets(clock, alerts, global_=4000, flood=1000)
    quotas.set_share(0.25)  # one partition of four: 250 tokens of the 1,000
    assert quotas.sources["flood"].try_reserve(200)
    quotas.watch("flood")
    assert quotas.global_budget.try_reserve(900)
    quotas.watch(GLOBAL)
    assert [(a.scope, a.name, a.used_tokens, a.limit_tokens, a.group_limit_tokens, a.share)
            for a in alerts] == [("SOURCE", "flood", 200, 250, 1000, 0.25),
                                 ("GLOBAL", "global", 900, 1000, 4000, 0.25)]


def test_the_alert_record_is_a_valid_budget_alert_with_a_deterministic_id() -> None:
    alert = QuotaAlert(scope="SOURCE", name="batch.import", severity=WARNING, used_tokens=850,
                       limit_tokens=1000, group_limit_tokens=4000, share=0.25)
    record = alert.record(now_ms=1_796_000_123_456)
    assert fastavro.validation.validate(record, SCHEMA)
    assert record["alert_id"] == "SOURCE:batch.import:WARNING:1796000100000"
    assert (record["window_start"], record["window_end"]) == (1_796_000_100_000, 1_796_000_160_000)
    assert "85% used" in record["message"] and "1000 of 4000" in record["message"]


async def test_a_flood_warns_then_pages_for_its_source_and_says_nothing_of_the_quiet_one(make_client) -> None:
    flood = [request(f"f{i}", "batch.import") for i in range(20)]
    quiet = [request(f"q{i}", "api.review") for i in range(3)]
    per_review = estimate(flood[0])
    alerts: list[QuotaAlert] = []
    quotas = GroupBudgets(global_per_minute=1_000_000,
                          source_per_minute={"batch.import": per_review * 2, "api.review": 100_000},
                          warn_share=0.8, on_alert=alerts.append)
    outcomes = await enrich_batch([*flood, *quiet], client=make_client(), quotas=quotas,
                                  token_budget=quotas.global_budget)
    assert sum(o.status is EnrichStatus.BUDGET_SKIPPED for o in outcomes) == 18
    assert [(a.name, a.severity) for a in alerts] == [("batch.import", WARNING), ("batch.import", CRITICAL)]


async def test_the_global_budget_pages_when_it_refuses_a_call(make_client) -> None:
    alerts: list[QuotaAlert] = []
    quotas = GroupBudgets(global_per_minute=1, on_alert=alerts.append)
    reqs: list[EnrichRequest] = [request("a", "api.review")]
    outcomes = await enrich_batch(reqs, client=make_client(), quotas=quotas,
                                  token_budget=quotas.global_budget)
    assert outcomes[0].status is EnrichStatus.BUDGET_SKIPPED
    assert [(a.scope, a.severity) for a in alerts] == [("GLOBAL", CRITICAL)]


def test_an_alert_that_fails_to_go_out_never_fails_the_reservation() -> None:
    def broken(alert: QuotaAlert) -> None:
        raise RuntimeError("producer closed")

    quotas = GroupBudgets(global_per_minute=1000, source_per_minute={"flood": 100}, on_alert=broken)
    assert quotas.sources["flood"].try_reserve(90)
    quotas.watch("flood")  # logged, not raised
    quotas.watch("flood", refused=True)
