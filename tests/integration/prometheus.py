"""A real Prometheus server (Debian's ``prometheus``) for tests: the chart's rules, one scrape job.

Started on a free 127.0.0.1 port with a throw-away TSDB, scraping and evaluating every
second so rates and recording rules have samples within seconds; stopped by its PID.
Queries go through the HTTP API (``/api/v1/query``), as Grafana's would.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from streams.dev.procs import free_port, spawn, stop, wait_until
from tests.helm.helm_render import REQUIRED, deep_merge, one, render

NAMESPACE = "streams"  # the chart's test release namespace (tests/helm/helm_render.py)
JOB = "reviewpulse-headless"  # what the ServiceMonitor's job label is: the headless Service's name
INTERVAL = "1s"
RATE_WINDOW = "10s"  # >= 4 scrapes at 1 s: rate() has two samples even after a missed scrape
COST_WINDOW = "30s"


def chart_rule_groups(rule_values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The PrometheusRule's groups as the chart renders them, with test-speed windows and
    ``rule_values`` (thresholds, durations) merged into ``prometheusRule``."""
    values = deep_merge(REQUIRED, {"prometheusRule": deep_merge({
        "enabled": True, "interval": INTERVAL, "rateWindow": RATE_WINDOW, "costWindow": COST_WINDOW,
    }, rule_values or {})})
    return list(one(render(values), "PrometheusRule")["spec"]["groups"])


@dataclass
class PrometheusServer:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; raises on a query Prometheus rejects."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        return list(body["data"]["result"])

    def finite_samples(self, expr: str) -> list[dict[str, Any]]:
        """Series of ``expr`` whose current value is a number (NaN: no observation in the window)."""
        return [s for s in self.query(expr) if math.isfinite(float(s["value"][1]))]

    def range_points(self, expr: str, *, last_s: int, step_s: float = 1.0) -> int:
        """Finite points of ``expr`` over the last ``last_s`` seconds, all series together."""
        end = httpx.get(f"{self.url}/api/v1/query", params={"query": "time()"}, timeout=5).json()
        now = float(end["data"]["result"][0])
        response = httpx.get(f"{self.url}/api/v1/query_range", timeout=10, params={
            "query": expr, "start": now - last_s, "end": now, "step": step_s})
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        return sum(1 for series in body["data"]["result"] for _, v in series["values"]
                   if math.isfinite(float(v)))

    def stop(self) -> None:
        stop(self.proc)


def start_prometheus(*, target: str, work_dir: Path, rule_groups: list[dict[str, Any]]) -> PrometheusServer:
    """Serve on a free port, scrape ``target`` (host:port) as the chart's job, load ``rule_groups``."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: apt-get install -y prometheus (make system-deps)"
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
    (work_dir / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [{
            "job_name": JOB,
            "static_configs": [{"targets": [target], "labels": {"namespace": NAMESPACE}}],
        }],
    }))
    port = free_port()
    log_path = work_dir / "prometheus.log"
    proc = spawn([binary, f"--config.file={work_dir / 'prometheus.yml'}",
                  f"--storage.tsdb.path={work_dir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                  "--log.level=warn"],
                 log_path=log_path)
    server = PrometheusServer(proc, port, log_path)
    try:
        wait_until(lambda: httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200,
                   timeout_s=30, what="prometheus", proc=proc, log_path=log_path)
    except BaseException:
        server.stop()
        raise
    return server
