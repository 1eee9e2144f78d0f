"""``/metrics`` on the session worker: promtool-clean, and every metric of DESIGN §8 moves.

Sample traffic (poison, duplicates, a bad-review burst) plus one scripted LLM 500 (one
retry) drive the metrics; the names the Helm chart's PrometheusRule reads must all exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.llm.client import OUTCOMES
from streams import metrics
from streams.dev.sample import produce_sample
from streams.dev.stack import Process, Stack
from tables.rules import Rule
from tests.until import until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = "/usr/bin/promtool"
# DESIGN §8 and issue 5: family -> a sample that must be > 0 after the traffic (None: present).
MUST_MOVE: dict[str, str | None] = {
    "reviewpulse_events_consumed_total": 'reviewpulse_events_consumed_total{topic="reviews.created"}',
    "reviewpulse_consumer_lag_messages": None,  # a gauge per partition; 0 once caught up
    "reviewpulse_processing_lag_seconds": "reviewpulse_processing_lag_seconds_count",
    "reviewpulse_llm_request_duration_seconds": "reviewpulse_llm_request_duration_seconds_count",
    "reviewpulse_llm_requests_total": 'reviewpulse_llm_requests_total{outcome="server_error"}',
    "reviewpulse_llm_retries_total": "reviewpulse_llm_retries_total",
    "reviewpulse_dlq_events_total": None,  # by reason: checked below
    "reviewpulse_llm_tokens_total": 'reviewpulse_llm_tokens_total{direction="in"}',
    "reviewpulse_llm_cost_micro_usd_total": "reviewpulse_llm_cost_micro_usd_total",
    "reviewpulse_llm_cache_hits_total": "reviewpulse_llm_cache_hits_total",
    "reviewpulse_llm_breaker_state": None,  # 0 while closed
    "reviewpulse_llm_token_budget_remaining": "reviewpulse_llm_token_budget_remaining",
    "reviewpulse_alerts_emitted_total": None,  # by rule: checked below
    "reviewpulse_aggregates_emitted_total": 'reviewpulse_aggregates_emitted_total{kind="TUMBLING"}',
    "reviewpulse_late_events_total": "reviewpulse_late_events_total",
    "reviewpulse_events_enriched_total": 'reviewpulse_events_enriched_total{status="ENRICHED"}',
    "reviewpulse_worker_healthy": "reviewpulse_worker_healthy",  # 1: /health answers 200
    "reviewpulse_commit_stalled_seconds": None,  # a gauge per partition; 0 while commits move
}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$")


def scrape(worker: Process) -> tuple[str, dict[str, float]]:
    response = httpx.get(f"{worker.url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        match = SAMPLE.match(line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return response.text, samples


def family(samples: dict[str, float], name: str) -> dict[str, float]:
    return {k: v for k, v in samples.items() if k == name or k.startswith(name + "{")
            or k.startswith(name + "_bucket") or k in (name + "_count", name + "_sum")}


@pytest.fixture(scope="module")
def traffic(stack: Stack, worker: Process, producer: Any, review_factory_module: Any) -> None:
    assert stack.broker and stack.registry and stack.llm
    # One 500 from the LLM: the client retries once (retries, server_error outcome).
    httpx.post(f"{stack.llm.url}/_sim/config", json={"script": ["500"]}, timeout=5).raise_for_status()
    producer.send_review(review_factory_module(text=f"Metrics probe {uuid.uuid4().hex}"))
    produce_sample(bootstrap_servers=stack.broker.bootstrap, registry_url=stack.registry.url,
                   count=80, rate_per_s=400, seed=11, restaurants=8, poison_every=20)
    # Nothing is late before the watermark is known (a fresh worker, when this module runs
    # first): once a window has closed, a review two minutes old is counted late.
    until(lambda: scrape(worker)[1].get('reviewpulse_aggregates_emitted_total{kind="TUMBLING"}', 0),
          timeout_s=40, what="a window closed: the watermark is known", interval_s=0.5)
    late = review_factory_module(text=f"Late probe {uuid.uuid4().hex}")
    late["occurred_at"] -= 120_000
    producer.send_review(late)


@pytest.fixture(scope="module")
def review_factory_module() -> Any:
    def make(*, text: str) -> dict[str, Any]:
        import time

        return {
            "event_id": f"evt-m-{uuid.uuid4().hex}", "event_version": 1,
            "occurred_at": int(time.time() * 1000),
            "entity": {"review_id": f"rv-{uuid.uuid4().hex[:8]}", "order_id": None, "user_id": "u-m",
                       "restaurant_id": f"metrics-{uuid.uuid4().hex[:8]}", "rating": 3, "text": text,
                       "language": "en"},
            "metadata": {"source": "test", "trace_id": f"trc-{uuid.uuid4().hex[:8]}", "retries": 0},
        }

    return make


def test_every_metric_of_the_design_is_exported_and_moves(worker: Process, traffic: None) -> None:
    def moved() -> list[str]:
        _, samples = scrape(worker)
        missing = [name for name in MUST_MOVE if not family(samples, name)]
        still = [key for key in MUST_MOVE.values() if key is not None and not samples.get(key, 0) > 0]
        if sum(family(samples, "reviewpulse_dlq_events_total").values()) <= 0:
            still.append("reviewpulse_dlq_events_total")
        if sum(v for k, v in family(samples, "reviewpulse_alerts_emitted_total").items()) <= 0:
            still.append("reviewpulse_alerts_emitted_total")
        return missing + still

    until(moved, timeout_s=40, what="every metric present and moving", done=lambda left: not left,
          interval_s=0.5)
    _, samples = scrape(worker)
    assert any(k.startswith("reviewpulse_consumer_lag_messages{") for k in samples)
    assert samples["reviewpulse_llm_breaker_state"] in (0.0, 1.0, 2.0)


def test_metrics_output_passes_promtool_check(worker: Process, traffic: None) -> None:
    assert shutil.which(PROMTOOL) or Path(PROMTOOL).exists(), f"{PROMTOOL} is missing"
    text, _ = scrape(worker)
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True,
                            timeout=30, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert not result.stdout.strip() and not result.stderr.strip(), (result.stdout + result.stderr).decode()


def test_helm_alert_rules_read_only_exported_metric_names(worker: Process) -> None:
    rules = (ROOT / "helm" / "reviewpulse" / "templates" / "prometheusrule.yaml").read_text()
    used = set(re.findall(r"\b(reviewpulse_[a-z_]+)\{", rules))
    assert used, "no metric names found in the PrometheusRule"
    _, samples = scrape(worker)
    exported = {re.sub(r"\{.*", "", k) for k in samples}
    assert used <= exported, f"the chart reads metrics the worker does not export: {used - exported}"


def test_pre_initialised_label_values_match_the_enums_they_mirror() -> None:
    assert set(metrics.LLM_OUTCOMES) == set(OUTCOMES)
    assert set(metrics.ALERT_RULES) == {str(r) for r in Rule}
