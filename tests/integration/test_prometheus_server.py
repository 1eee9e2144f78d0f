"""A real Prometheus scrapes the session worker with the chart's rules; every §5.1 series has samples.

promtool proves the rules parse and fire on synthetic series; this proves they meet the
metrics the worker really exports. Debian's ``prometheus`` runs with the PrometheusRule
exactly as the chart renders it (test-speed windows), scraping every second while sample
traffic flows, with poison records (DLQ) and LLM 429s (retries). The Grafana dashboard
the chart ships is checked the same way: every panel query returns samples.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.dev.sample import produce_sample
from streams.dev.stack import Process, Stack
from tests.integration.prometheus import (
    JOB,
    NAMESPACE,
    RATE_WINDOW,
    PrometheusServer,
    chart_rule_groups,
    start_prometheus,
)
from tests.integration.test_pipeline_support import simulator_config
from tests.until import until

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "reviewpulse" / "dashboards" / "reviewpulse.json"

# Seed 000 §5.1, row by row: the recorded series the chart's alerts read.
SEED_SERIES = {
    "queue depth": "reviewpulse:queue_depth:messages",
    "processing-lag p95": 'reviewpulse:processing_lag_seconds:quantile{quantile="0.95"}',
    "LLM p99": "reviewpulse:llm_request_duration_seconds:p99",
    "DLQ rate": "reviewpulse:dlq_ratio:rate",
    "retry rate": "reviewpulse:llm_retry_ratio:rate",
    "cost per 1,000 events": "reviewpulse:cost_per_1000_events:usd",
}
# Traffic makes every one of these move: a rate of 0 would prove nothing about the rule.
MUST_BE_POSITIVE = {"processing-lag p95", "LLM p99", "DLQ rate", "retry rate", "cost per 1,000 events"}


@pytest.fixture(scope="module")
def traffic(stack: Stack, worker: Process) -> Iterator[None]:
    """Sample traffic for as long as the module runs: a poison record every 25 reviews, 20% 429s."""
    assert stack.broker and stack.registry
    stop = threading.Event()
    with simulator_config(stack, rate_429_rate=0.2, retry_after_s=0.05):
        producer = threading.Thread(target=produce_sample, daemon=True, kwargs={
            "bootstrap_servers": stack.broker.bootstrap, "registry_url": stack.registry.url,
            "count": 100_000, "rate_per_s": 30, "poison_every": 25, "seed": random.randrange(1 << 30),
            "stop": stop,
        })
        producer.start()
        try:
            yield
        finally:
            stop.set()
            producer.join(timeout=30)


@pytest.fixture(scope="module")
def prometheus(
    worker: Process, traffic: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = start_prometheus(target=f"127.0.0.1:{worker.port}", rule_groups=chart_rule_groups(),
                              work_dir=tmp_path_factory.mktemp("prometheus"))
    yield server
    server.stop()


def test_each_seed_series_returns_samples_through_the_http_api(prometheus: PrometheusServer):
    def values() -> dict[str, list[float]]:
        return {row: [float(s["value"][1]) for s in prometheus.finite_samples(expr)]
                for row, expr in SEED_SERIES.items()}

    def complete(found: dict[str, list[float]]) -> bool:
        return all(found.values()) and all(max(found[row]) > 0 for row in MUST_BE_POSITIVE)

    found = until(values, timeout_s=90, what="every §5.1 series with samples", interval_s=1, done=complete)
    print("\n" + "\n".join(f"  {row:22} {SEED_SERIES[row]:62} {found[row]}" for row in SEED_SERIES))
    for row, expr in SEED_SERIES.items():
        assert prometheus.query(expr)[0]["metric"]["namespace"] == NAMESPACE, row
    assert all(0 <= v <= 1 for row in ("DLQ rate", "retry rate") for v in found[row])


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, Grafana's variables filled in."""
    board = json.loads(DASHBOARD.read_text())
    fill = {"$namespace": NAMESPACE, "$job": JOB, "$__rate_interval": RATE_WINDOW}
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in fill.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: unfilled variable in {expr}"
            queries.append((panel["title"], expr))
    return queries


def test_every_dashboard_panel_query_returns_samples(prometheus: PrometheusServer):
    queries = dashboard_queries()
    assert len({title for title, _ in queries}) == 8  # the six §5.1 rows, throughput, consumer lag

    def counts() -> list[tuple[str, str, int]]:
        return [(title, expr, prometheus.range_points(expr, last_s=30)) for title, expr in queries]

    # Five points each: a panel draws a line, not one dot from a single evaluation.
    found: list[tuple[str, str, int]] = until(
        counts, timeout_s=90, what="samples for every panel query", interval_s=1,
        done=lambda rows: all(n >= 5 for _, _, n in rows))
    print("\n" + "\n".join(f"  {title:28} {n:4} points  {expr}" for title, expr, n in found))


def test_the_health_alerts_stay_silent_on_a_worker_under_traffic(prometheus: PrometheusServer):
    """Their series reach Prometheus, and neither alert is even pending: commits move under
    traffic (by-restaurant's ticks wait after every commit) and /health answers 200."""
    healthy = until(lambda: prometheus.finite_samples("reviewpulse_worker_healthy"), timeout_s=60,
                    what="reviewpulse_worker_healthy scraped", interval_s=1)
    longest_30s = "max_over_time(reviewpulse_commit_stalled_seconds[30s])"
    stalls = until(lambda: prometheus.finite_samples(longest_30s), timeout_s=60,
                   what="reviewpulse_commit_stalled_seconds scraped", interval_s=1)
    longest = max(float(s["value"][1]) for s in stalls)
    print(f"\n{len(stalls)} partitions' commits watched; longest stall over 30 s: {longest} s")
    assert [float(s["value"][1]) for s in healthy] == [1.0]
    assert longest < 10  # the smallest REVIEWPULSE_COMMIT_STUCK_S allowed
    assert prometheus.query('ALERTS{alertname=~"ReviewPulseWorkerUnhealthy|ReviewPulseCommitStuck"}') == []
