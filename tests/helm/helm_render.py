"""The chart rendered offline by Helm's Go SDK, and the value sets it is tested with.

helm-python-sdk binds Helm v4's Go SDK (libhelm_c, shipped in the wheel), so neither a
helm binary nor a cluster is needed. Missing tools fail the run: they are installed by
the dev extra (helm-python-sdk, kubernetes-validate) and apt (prometheus, for promtool).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

try:
    import helm_python
except ImportError as exc:  # fail loudly, never skip: CI must install it
    raise ImportError(
        "tests/helm need the Helm SDK: pip install 'helm-python-sdk>=0.2.2' (dev extra)"
    ) from exc

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "reviewpulse"
RELEASE = "reviewpulse"
NAMESPACE = "streams"
# The Kubernetes version manifests are validated against (kubernetes-validate ships schemas
# up to its own version; 1.34 is a current release every managed offering runs).
KUBE_VERSION = "1.34.0"

# The least a release must be told: everything else has a working default.
REQUIRED: dict[str, Any] = {
    "kafka": {"bootstrapServers": "kafka.kafka.svc:9092"},
    "schemaRegistry": {"url": "http://schema-registry.kafka.svc:8081"},
    "llm": {"baseUrl": "http://llm.llm.svc:8000/v1", "model": "test-model"},
    "secrets": {"llmApiKey": "sk-required-test-key"},
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: override's leaves win, nested dicts merge (what `helm -f a -f b` does)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def ci_variants() -> dict[str, dict[str, Any]]:
    """Every value set the chart must lint, render and validate with."""
    variants = {"defaults+required": REQUIRED}
    for path in sorted((CHART / "ci").glob("*.yaml")):
        variants[f"ci/{path.name}"] = yaml.safe_load(path.read_text()) or {}
    return variants


VARIANTS = ci_variants()


def render_raw(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, exactly as `helm template` would produce it."""
    with helm_python.Chart.load(CHART) as chart:
        return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt and empty files left out)."""
    docs = []
    for path, text in sorted(render_raw(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Environment variable name -> its EnvVar, from the worker container."""
    sts = one(docs, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}
