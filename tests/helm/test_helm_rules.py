"""The PrometheusRule passes `promtool check rules`; `promtool test rules` fires each seed alert."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_render import REQUIRED, deep_merge, one, render

RULES_TEST = Path(__file__).with_name("rules_test.yaml")

# The metric contract the rules are written against (the app's /metrics, prefix reviewpulse_).
METRICS = {
    "reviewpulse_consumer_lag_messages": "gauge",  # {topic, partition}: queue depth
    "reviewpulse_processing_lag_seconds": "histogram",
    "reviewpulse_llm_request_duration_seconds": "histogram",  # one observation per HTTP attempt
    "reviewpulse_events_consumed_total": "counter",  # {topic}
    "reviewpulse_dlq_events_total": "counter",  # {reason}
    "reviewpulse_llm_retries_total": "counter",
    "reviewpulse_llm_cost_micro_usd_total": "counter",
    "reviewpulse_events_enriched_total": "counter",  # {status}
    "reviewpulse_worker_healthy": "gauge",  # 1, or 0 while /health fails
    "reviewpulse_commit_stalled_seconds": "gauge",  # {topic, partition}
    "reviewpulse_llm_breaker_state": "gauge",  # 0 closed, 1 half-open, 2 open
    "reviewpulse_llm_token_budget_remaining": "gauge",  # this worker's share of the group budget
    "reviewpulse_budget_share": "gauge",  # by-restaurant partitions owned / all
    "reviewpulse_source_token_quota_remaining": "gauge",  # {source}
    "reviewpulse_enrichment_shed_total": "counter",
}
ALERTS = {
    "ReviewPulseQueueDepthHigh",
    "ReviewPulseProcessingLagHigh",
    "ReviewPulseLlmLatencyHigh",
    "ReviewPulseDlqRateHigh",
    "ReviewPulseLlmRetryRateHigh",
    "ReviewPulseWorkerUnhealthy",
    "ReviewPulseCommitStuck",
    "ReviewPulseLlmBreakerOpen",
    "ReviewPulseTokenBudgetExhausted",
    "ReviewPulseSourceQuotaExhausted",
    "ReviewPulseBudgetSkippedRateHigh",
    "ReviewPulseFallbackRateHigh",
    "ReviewPulseShedRateHigh",
}
COST_ALERTS = {"ReviewPulseTokenBudgetExhausted", "ReviewPulseSourceQuotaExhausted",
               "ReviewPulseBudgetSkippedRateHigh", "ReviewPulseFallbackRateHigh", "ReviewPulseShedRateHigh"}
# Alerts that say what to do (a runbook annotation naming metrics the worker exports).
HEALTH_ALERTS = {"ReviewPulseWorkerUnhealthy", "ReviewPulseCommitStuck", "ReviewPulseLlmBreakerOpen",
                 *COST_ALERTS}


def rule_groups(values: dict[str, Any] | None = None) -> dict[str, Any]:
    values = deep_merge(REQUIRED, {"prometheusRule": {"enabled": True}, **(values or {})})
    return {"groups": one(render(values), "PrometheusRule")["spec"]["groups"]}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    return tmp_path


def _promtool(promtool: str, *args: str, cwd: Path) -> None:
    done = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def test_rules_pass_promtool_check(promtool: str, rules_dir: Path) -> None:
    _promtool(promtool, "check", "rules", "rules.yaml", cwd=rules_dir)


def test_each_alert_fires_on_synthetic_series(promtool: str, rules_dir: Path) -> None:
    _promtool(promtool, "test", "rules", RULES_TEST.name, cwd=rules_dir)


def test_rules_define_the_seed_alerts_and_cost_recording_rule() -> None:
    rules = [r for g in rule_groups()["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules if "alert" in r} == ALERTS
    assert "reviewpulse:cost_per_1000_events:usd" in {r.get("record") for r in rules}


def test_every_alert_is_shown_firing_by_the_rules_test() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {
        case["alertname"]
        for group in tests
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == ALERTS


def test_rules_use_only_contract_metrics() -> None:
    text = "\n".join(r["expr"] for g in rule_groups()["groups"] for r in g["rules"])
    used = set(re.findall(r"\b(reviewpulse_[a-z_]+)", text))
    suffixes = ("_bucket", "_count", "_sum")
    base = {next((u.removesuffix(s) for s in suffixes if u.endswith(s)), u) for u in used}
    assert base <= set(METRICS), f"not in the metric contract: {base - set(METRICS)}"
    assert base == set(METRICS), f"contract metrics no rule uses: {set(METRICS) - base}"


def test_rules_are_scoped_to_the_release() -> None:
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            assert 'namespace="streams",job="reviewpulse-headless"' in rule["expr"], rule


def test_thresholds_come_from_values() -> None:
    groups = rule_groups({"prometheusRule": {"enabled": True, "thresholds": {"queueDepthMessages": 5000}}})
    rules = {r.get("alert"): r for g in groups["groups"] for r in g["rules"]}
    assert rules["ReviewPulseQueueDepthHigh"]["expr"].endswith("> 5000")


def test_each_health_alert_says_what_to_do_with_metrics_the_worker_exports() -> None:
    from streams.metrics import REGISTRY

    exported = {m.name for m in REGISTRY.collect()}
    rules = {r["alert"]: r for g in rule_groups()["groups"] for r in g["rules"] if "alert" in r}
    for name in HEALTH_ALERTS:
        runbook = rules[name]["annotations"]["runbook"]
        assert len(runbook) > 80, name
        named = {m.removesuffix("_total") for m in re.findall(r"\b(reviewpulse_[a-z_]+)", runbook)}
        assert named <= exported, f"{name}'s runbook names metrics not exported: {named - exported}"


def test_health_alert_durations_and_threshold_come_from_values() -> None:
    groups = rule_groups({"prometheusRule": {
        "enabled": True, "thresholds": {"commitStalledSeconds": 90},
        "for": {"workerUnhealthy": "3m", "commitStuck": "4m", "llmBreakerOpen": "7m"}}})
    rules = {r.get("alert"): r for g in groups["groups"] for r in g["rules"]}
    assert rules["ReviewPulseCommitStuck"]["expr"].endswith("> 90")
    names = ("WorkerUnhealthy", "CommitStuck", "LlmBreakerOpen")
    durations = [rules[f"ReviewPulse{n}"]["for"] for n in names]
    assert durations == ["3m", "4m", "7m"]
