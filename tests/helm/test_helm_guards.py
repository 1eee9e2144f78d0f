"""Each `fail` guard of the chart fires with a message naming the value to change."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
from helm_render import REQUIRED, deep_merge, render

GUARDS: dict[str, tuple[dict[str, Any], str]] = {
    "no-kafka": ({"kafka": {"bootstrapServers": ""}}, "kafka.bootstrapServers is required"),
    "no-registry": ({"schemaRegistry": {"url": ""}}, "schemaRegistry.url is required"),
    "no-llm-url": ({"llm": {"baseUrl": ""}}, "llm.baseUrl is required"),
    "no-llm-model": ({"llm": {"model": ""}}, "llm.model is required"),
    "keda-and-hpa": (
        {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}},
        "autoscaling.keda.enabled and autoscaling.hpa.enabled are both true",
    ),
    "replicas-over-partitions": (
        {"replicaCount": 5, "config": {"topic_partitions": 4}},
        "replicaCount (5) is larger than config.topic_partitions (4)",
    ),
    "keda-max-over-partitions": (
        {"autoscaling": {"keda": {"enabled": True, "maxReplicas": 8}}},
        "autoscaling.keda.maxReplicas (8) is larger than config.topic_partitions (4)",
    ),
    "hpa-max-over-partitions": (
        {"autoscaling": {"hpa": {"enabled": True, "maxReplicas": 6}}},
        "autoscaling.hpa.maxReplicas (6) is larger than config.topic_partitions (4)",
    ),
    "hpa-min-over-max": (
        {"autoscaling": {"hpa": {"enabled": True, "minReplicas": 3, "maxReplicas": 2}}},
        "autoscaling.hpa.minReplicas (3) is larger than maxReplicas (2)",
    ),
    "existing-and-inline-secrets": (
        {"secrets": {"existingSecret": "creds"}},
        "secrets.existingSecret (creds) and inline secrets (secrets.llmApiKey) are both set",
    ),
    "sasl-without-credentials": (
        {"kafka": {"securityProtocol": "SASL_SSL"}},
        "kafka.securityProtocol is SASL_SSL: set secrets.kafkaSaslUsername",
    ),
    "registry-auth-without-credentials": (
        {"schemaRegistry": {"basicAuth": {"enabled": True}}},
        "schemaRegistry.basicAuth.enabled is true: set secrets.schemaRegistryUsername",
    ),
    "llm-key-missing": (
        {"secrets": {"llmApiKey": ""}},
        "llm.apiKey.enabled is true but no key is given",
    ),
    "web-auth-without-token": ({"web": {"auth": {"enabled": True}}}, "web.auth.enabled is true"),
    "memory-bounds-over-limit": (
        {"memory": {"enrichBacklog": "600Mi"}},
        "memory.baseAllowance plus the memory bounds (memory.enrichBacklog, llmCache, webHistory, "
        "webRecent, schemaCache) come to 1192 MiB, more than resources.limits.memory (1Gi, 1024 MiB)",
    ),
    "memory-limit-not-a-quantity": (
        {"resources": {"limits": {"memory": "1.5Gi"}}},
        '"1.5Gi" is not a byte quantity',
    ),
    "extra-env-overrides-managed": (
        {"extraEnv": [{"name": "REVIEWPULSE_WEB_HOST", "value": "127.0.0.1"}]},
        "extraEnv sets REVIEWPULSE_WEB_HOST, which the chart manages",
    ),
}


@pytest.mark.parametrize("case", sorted(GUARDS))
def test_guard_fails_with_its_message(case: str) -> None:
    override, message = GUARDS[case]
    with pytest.raises(helm_python.HelmRenderError, match="reviewpulse: ") as caught:
        render(deep_merge(REQUIRED, override))
    assert message in str(caught.value)


def test_chart_defaults_alone_ask_for_kafka_first() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"kafka\.bootstrapServers is required"):
        render({})


def test_guards_allow_what_they_should() -> None:
    # Replicas equal to partitions; an existing Secret with no inline values; no LLM key.
    render(
        deep_merge(
            REQUIRED, {"replicaCount": 4, "secrets": {"llmApiKey": ""}, "llm": {"apiKey": {"enabled": False}}}
        )
    )
    render(deep_merge(REQUIRED, {"secrets": {"llmApiKey": "", "existingSecret": "creds"}}))
    render(deep_merge(REQUIRED, {"replicaCount": 9, "config": {"topic_partitions": None}}))


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"config": {"llm_api_key": "sk-in-a-configmap"}}, "llm_api_key"),  # a secret
        ({"config": {"kafka_bootstrap_servers": "x:9092"}}, "kafka_bootstrap_servers"),  # first-class
        ({"config": {"topic_partitionz": 4}}, "topic_partitionz"),  # typo
        ({"config": {"topic_partitions": "four"}}, "/config/topic_partitions"),
        ({"kafka": {"securityProtocol": "TLS"}}, "/kafka/securityProtocol"),
        ({"dataDir": "relative/dir"}, "/dataDir"),
    ],
    ids=["secret-in-config", "first-class-in-config", "typo", "wrong-type", "enum", "relative-path"],
)
def test_schema_rejects_values_the_app_would_misread(override: dict[str, Any], path: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as caught:
        render(deep_merge(REQUIRED, override))
    assert path in str(caught.value)


def _memory_env(values: dict[str, Any]) -> dict[str, str]:
    config = next(d for d in render(deep_merge(REQUIRED, values)) if d and d.get("kind") == "ConfigMap")
    return {k: v for k, v in config["data"].items() if k.endswith("_MAX_BYTES")}


def test_memory_bounds_reach_the_worker_in_bytes() -> None:
    assert _memory_env({}) == {
        "REVIEWPULSE_ENRICH_BACKLOG_MAX_BYTES": str(256 * 2**20),
        "REVIEWPULSE_CACHE_MAX_BYTES": str(32 * 2**20),
        "REVIEWPULSE_WEB_HISTORY_MAX_BYTES": str(64 * 2**20),
        "REVIEWPULSE_WEB_RECENT_MAX_BYTES": str(32 * 2**20),
        "REVIEWPULSE_SCHEMA_CACHE_MAX_BYTES": str(16 * 2**20),
    }
    env = _memory_env({"memory": {"enrichBacklog": 5_000_000, "llmCache": "2M", "webHistory": "1Gi"},
                       "resources": {"limits": {"memory": "4Gi"}}})
    assert env["REVIEWPULSE_ENRICH_BACKLOG_MAX_BYTES"] == "5000000"
    assert env["REVIEWPULSE_CACHE_MAX_BYTES"] == "2000000"
    assert env["REVIEWPULSE_WEB_HISTORY_MAX_BYTES"] == str(2**30)


def test_memory_bounds_that_fit_the_limit_render() -> None:
    # Exactly at the limit: 448 + 256 + 32 + 64 + 32 + 16 = 848 MiB, the base raised by 176 MiB.
    render(deep_merge(REQUIRED, {"memory": {"baseAllowance": "624Mi"}}))
    # No memory limit: nothing to check against.
    render(deep_merge(REQUIRED, {"resources": {"limits": {"memory": None}},
                                 "memory": {"enrichBacklog": "8Gi"}}))
