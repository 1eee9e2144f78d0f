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
