"""The chart lints, renders valid Kubernetes objects, and keeps the worker contract of DESIGN §9."""

from __future__ import annotations

import base64
import re
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from helm_render import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    REQUIRED,
    VARIANTS,
    container_env,
    deep_merge,
    one,
    render,
    render_raw,
)

# Custom resources kubernetes-validate has no schema for (it ships only built-in kinds).
# They are not skipped silently: test_custom_resources_point_at_the_workers checks them.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}


def test_there_are_value_variants_to_test() -> None:
    assert {"ci/minimal-values.yaml", "ci/production-values.yaml", "ci/hpa-values.yaml"} <= set(VARIANTS)


@pytest.mark.parametrize("values", [None, *VARIANTS.values()], ids=["defaults", *VARIANTS])
def test_chart_lints_without_warnings(values: dict[str, Any] | None) -> None:
    report = helm_python.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_chart_is_pinned_to_its_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == "0.1.0"
    sts = one(render(REQUIRED), "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(f":{chart['appVersion']}")
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_every_manifest_is_valid_kubernetes(variant: tuple[str, dict[str, Any]]) -> None:
    _, values = variant
    docs = render(values)
    validated = 0
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        validated += 1
    assert validated >= 6  # StatefulSet, 2 Services, ConfigMap, ServiceAccount, PDB at least


def test_custom_resources_point_at_the_workers() -> None:
    docs = render(VARIANTS["ci/production-values.yaml"])
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    assert kinds >= CRD_KINDS
    sts = one(docs, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]

    scaled = one(docs, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": sts["metadata"]["name"],
    }
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "reviewpulse-prod"  # Faust's group is app_id
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["authenticationRef"]["name"] == one(docs, "TriggerAuthentication")["metadata"]["name"]
    refs = one(docs, "TriggerAuthentication")["spec"]["secretTargetRef"]
    assert {r["parameter"] for r in refs} == {"username", "password"}
    assert {r["name"] for r in refs} == {"reviewpulse-credentials"}

    monitor = one(docs, "ServiceMonitor")["spec"]
    selected = [
        s
        for s in docs
        if s["kind"] == "Service"
        and monitor["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["spec"].get("clusterIP") for s in selected] == ["None"]  # the headless one only
    assert selected[0]["spec"]["publishNotReadyAddresses"] is True
    assert {p["name"] for p in selected[0]["spec"]["ports"]} >= {monitor["endpoints"][0]["port"]}
    assert selected[0]["spec"]["selector"].items() <= pod_labels.items()


def test_statefulset_keeps_the_worker_contract() -> None:
    docs = render(REQUIRED)
    sts = one(docs, "StatefulSet")["spec"]
    pod = sts["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    assert sts["podManagementPolicy"] == "Parallel"
    assert sts["serviceName"] == "reviewpulse-headless"
    assert [c["metadata"]["name"] for c in sts["volumeClaimTemplates"]] == ["data"]
    assert mounts["data"] == "/var/lib/reviewpulse"
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert container["args"] == ["worker"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user (Dockerfile)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert mounts["tmp"] == "/tmp" and "emptyDir" in volumes["tmp"]

    env = container_env(docs)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["REVIEWPULSE_WEB_HOST"]["value"] == "0.0.0.0"
    assert (
        env["REVIEWPULSE_WEB_ADVERTISED_URL"]["value"]
        == f"http://$(POD_NAME).reviewpulse-headless.{NAMESPACE}.svc.cluster.local:6066"
    )
    names = list(env)
    assert names.index("POD_NAME") < names.index("REVIEWPULSE_WEB_ADVERTISED_URL")  # $(…) order
    assert container["envFrom"] == [{"configMapRef": {"name": "reviewpulse"}}]


def test_state_volume_is_an_empty_dir_without_persistence() -> None:
    docs = render(VARIANTS["ci/minimal-values.yaml"])
    sts = one(docs, "StatefulSet")["spec"]
    assert "volumeClaimTemplates" not in sts
    volumes = {v["name"]: v for v in sts["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_llm_key_is_a_mounted_file_never_an_environment_variable() -> None:
    docs = render(REQUIRED)
    env = container_env(docs)
    assert "REVIEWPULSE_LLM_API_KEY" not in env
    key_file = env["REVIEWPULSE_LLM_API_KEY_FILE"]["value"]
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "llm-api-key")
    assert key_file == f"{mount['mountPath']}/api-key" and mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "llm-api-key")
    assert volume["secret"]["items"] == [{"key": "llm-api-key", "path": "api-key"}]
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["llm-api-key"]).decode() == "sk-required-test-key"


def test_secret_values_appear_only_in_the_secret() -> None:
    values = VARIANTS["ci/hpa-values.yaml"]
    raw = render_raw(values)
    # user names are not secret; keys, passwords and tokens are
    inline = [v for k, v in values["secrets"].items() if k != "keys" and "Username" not in k and v]
    assert inline
    for path, text in raw.items():
        for secret in inline:
            assert secret not in text, f"{secret!r} leaks into {path}"


def test_existing_secret_replaces_the_chart_secret() -> None:
    docs = render(VARIANTS["ci/production-values.yaml"])
    assert not [d for d in docs if d["kind"] == "Secret"]
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in container_env(docs).values()
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {"reviewpulse-credentials"}


@pytest.mark.parametrize("name", ["ci/production-values.yaml", "ci/hpa-values.yaml"])
def test_replicas_are_left_to_the_autoscaler(name: str) -> None:
    docs = render(VARIANTS[name])
    assert "replicas" not in one(docs, "StatefulSet")["spec"]
    autoscalers = [d for d in docs if d["kind"] in {"ScaledObject", "HorizontalPodAutoscaler"}]
    assert len(autoscalers) == 1


def test_pdb_allows_draining_a_single_worker() -> None:
    pdb = one(render(REQUIRED), "PodDisruptionBudget")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": pdb["selector"]}


def test_network_policy_admits_peers_and_monitoring_only() -> None:
    policy = one(render(VARIANTS["ci/production-values.yaml"]), "NetworkPolicy")["spec"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": 6066, "protocol": "TCP"}]
    assert len(ingress["from"]) == 2  # this release's workers + the monitoring namespace
    assert {"port": 53, "protocol": "UDP"} in policy["egress"][0]["ports"]


def test_whole_numbers_render_as_integers_not_floats() -> None:
    values = deep_merge(REQUIRED, {"config": {"token_budget_per_minute": 1_000_000, "take_within_s": 0.05}})
    data = one(render(values), "ConfigMap")["data"]
    assert data["REVIEWPULSE_TOKEN_BUDGET_PER_MINUTE"] == "1000000"
    assert data["REVIEWPULSE_TAKE_WITHIN_S"] == "0.05"


def _leaves(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node and prefix != "config":
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}.{k}" if prefix else k)]
    return [prefix]


def test_every_value_is_documented_with_a_param_comment() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^## @param (\S+)", text, re.M))
    leaves = set(_leaves(yaml.safe_load(text)))
    assert leaves - documented == set(), "values without a `## @param` line"
    assert documented - leaves == set(), "`## @param` lines for values that do not exist"
