"""The Grafana dashboard ConfigMap: off by default, labelled for the sidecar, reading what is recorded."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import kubernetes_validate
from helm_render import CHART, KUBE_VERSION, NAMESPACE, REQUIRED, deep_merge, one, render

DASHBOARD_FILE = CHART / "dashboards" / "reviewpulse.json"
SEED_RECORDED = {  # seed 000 §5.1, one panel each
    "reviewpulse:queue_depth:messages",
    "reviewpulse:processing_lag_seconds:quantile",
    "reviewpulse:llm_request_duration_seconds:p99",
    "reviewpulse:dlq_ratio:rate",
    "reviewpulse:llm_retry_ratio:rate",
    "reviewpulse:cost_per_1000_events:usd",
}


def dashboard_maps(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in render(deep_merge(REQUIRED, values))
            if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]


def enabled(**dashboard: Any) -> list[dict[str, Any]]:
    return dashboard_maps({"grafana": {"dashboard": {"enabled": True, **dashboard}},
                           "prometheusRule": {"enabled": True}})


def test_dashboard_is_off_by_default() -> None:
    assert dashboard_maps({}) == []


def test_enabled_dashboard_is_a_configmap_the_grafana_sidecar_loads() -> None:
    (config_map,) = enabled()
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    (name,) = config_map["data"]
    assert name.endswith(".json")
    assert json.loads(config_map["data"][name]) == json.loads(DASHBOARD_FILE.read_text())


def test_enabled_dashboard_lints_and_is_valid_kubernetes() -> None:
    values = deep_merge(REQUIRED, {"grafana": {"dashboard": {"enabled": True}}})
    report = helm_python.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report
    (config_map,) = enabled()
    kubernetes_validate.validate(config_map, KUBE_VERSION, strict=True)


def test_namespace_labels_and_folder_annotation_come_from_values() -> None:
    (config_map,) = enabled(namespace="monitoring", labels={"grafana_dashboard": "yes"},
                            annotations={"grafana_folder": "Streams"})
    meta = config_map["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana_dashboard"] == "yes"
    assert meta["annotations"]["grafana_folder"] == "Streams"


def test_panels_are_the_six_seed_rows_plus_throughput_consumer_lag_and_spend_by_source() -> None:
    board = json.loads(DASHBOARD_FILE.read_text())
    titles = [p["title"] for p in board["panels"]]
    assert len(titles) == 9 and "Throughput" in titles and "Consumer lag per partition" in titles
    assert "LLM spend by source" in titles
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    assert {s for s in SEED_RECORDED if s in exprs} == SEED_RECORDED


def test_every_recorded_series_the_dashboard_reads_is_recorded_by_the_chart() -> None:
    board = json.loads(DASHBOARD_FILE.read_text())
    read = {m for p in board["panels"] for t in p["targets"]
            for m in re.findall(r"reviewpulse:[a-z0-9_:]+", t["expr"])}
    rules = one(render(deep_merge(REQUIRED, {"prometheusRule": {"enabled": True}})), "PrometheusRule")
    recorded = {r["record"] for g in rules["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert read and read <= recorded
