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
    # the six §5.1 rows, throughput, consumer lag, spend by source
    assert len({title for title, _ in queries}) == 9

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


COST_ALERTS = ("ReviewPulseTokenBudgetExhausted", "ReviewPulseSourceQuotaExhausted",
               "ReviewPulseBudgetSkippedRateHigh", "ReviewPulseFallbackRateHigh", "ReviewPulseShedRateHigh")


def test_the_cost_alerts_stay_silent_on_a_worker_under_traffic(prometheus: PrometheusServer):
    """Issue 32.3: the budget and rate alerts read series the worker exports, and normal
    traffic (20% 429s included) leaves them not even pending."""
    until(lambda: prometheus.finite_samples("reviewpulse_llm_token_budget_remaining")
          and prometheus.range_points('sum(rate(reviewpulse_events_enriched_total[10s]))', last_s=10) >= 5,
          timeout_s=60, what="budget and enrichment series scraped", interval_s=1)
    share = [float(s["value"][1]) for s in prometheus.finite_samples("reviewpulse_budget_share")]
    assert share == [1.0]  # the session worker owns every partition
    names = "|".join(COST_ALERTS)
    assert prometheus.query(f'ALERTS{{alertname=~"{names}"}}') == []


class _CraftedExporter:
    """A /metrics endpoint with crafted series: a worker owning half the partitions whose global
    budget and batch.import quota are spent, and of 50 enriched reviews a second 10 BUDGET_SKIPPED,
    20 FALLBACK, with 1 shed."""

    RATES = {'reviewpulse_events_enriched_total{status="ENRICHED"}': 20,
             'reviewpulse_events_enriched_total{status="BUDGET_SKIPPED"}': 10,
             'reviewpulse_events_enriched_total{status="FALLBACK"}': 20,
             "reviewpulse_enrichment_shed_total": 1}

    def __init__(self) -> None:
        import http.server
        import time as _time

        started = _time.monotonic()
        rates = self.RATES

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                elapsed = _time.monotonic() - started
                lines = ["reviewpulse_budget_share 0.5", "reviewpulse_llm_token_budget_remaining 0",
                         'reviewpulse_source_token_quota_remaining{source="batch.import"} 0',
                         'reviewpulse_source_token_quota_remaining{source="api.review"} 390000',
                         *(f"{series} {rate * elapsed}" for series, rate in rates.items())]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_cost_alerts_fire_on_crafted_series(tmp_path: Path):
    """Each new alert, as the chart renders it (its durations shortened), fires on a real
    Prometheus scraping crafted series; the quota alert names the spent source only."""
    exporter = _CraftedExporter()
    try:
        server = start_prometheus(
            target=f"127.0.0.1:{exporter.port}", work_dir=tmp_path / "prometheus",
            rule_groups=chart_rule_groups({"for": {"budgetExhausted": "3s", "skipRates": "3s"}}))
        try:
            firing = until(lambda: server.query('ALERTS{alertstate="firing"}'), timeout_s=60,
                           what="every cost alert firing", interval_s=1,
                           done=lambda rows: set(COST_ALERTS) <= {r["metric"]["alertname"] for r in rows})
        finally:
            server.stop()
    finally:
        exporter.stop()
    by_name = {r["metric"]["alertname"]: r["metric"] for r in firing}
    print("\n" + "\n".join(f"  {name:36} {by_name[name]}" for name in COST_ALERTS))
    quota = [r["metric"] for r in firing if r["metric"]["alertname"] == "ReviewPulseSourceQuotaExhausted"]
    assert [m["source"] for m in quota] == ["batch.import"]
    assert all(by_name[name]["severity"] == "warning" for name in COST_ALERTS)
