"""Every REVIEWPULSE_* variable the chart sets is a Settings field, and the values validate."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helm_render import CHART, REQUIRED, container_env, deep_merge, one, render

from streams.settings import Settings

# Settings the chart sets from named values (DESIGN §10) rather than `config`.
FIRST_CLASS = {
    "kafka_bootstrap_servers": "kafka.bootstrapServers",
    "kafka_security_protocol": "kafka.securityProtocol",
    "kafka_sasl_mechanism": "kafka.sasl.mechanism",
    "schema_registry_url": "schemaRegistry.url",
    "llm_base_url": "llm.baseUrl",
    "llm_model": "llm.model",
    "web_port": "web.port",
    "data_dir": "dataDir",
    # Byte bounds, beside resources.limits.memory (the chart checks their sum against it).
    "enrich_backlog_max_bytes": "memory.enrichBacklog",
    "cache_max_bytes": "memory.llmCache",
    "web_history_max_bytes": "memory.webHistory",
    "web_recent_max_bytes": "memory.webRecent",
    "schema_cache_max_bytes": "memory.schemaCache",
}
# Secret settings: read from the Secret, never from values in a ConfigMap.
SECRET = {
    "kafka_sasl_username",
    "kafka_sasl_password",
    "schema_registry_username",
    "schema_registry_password",
    "llm_api_key",
    "web_auth_token",
}
# Settings the chart computes for every pod.
MANAGED = {"web_host", "web_advertised_url", "llm_api_key_file"}
# DESIGN §10: the settings every deployment sets.
OPERATOR_CONTRACT = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "SCHEMA_REGISTRY_URL",
    "LLM_BASE_URL",
    "LLM_MODEL",
    "LLM_API_KEY_FILE",
    "WEB_PORT",
    "DATA_DIR",
]
FIELDS = set(Settings.model_fields)


def chart_environment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Name -> value or EnvVar source, for everything the worker container is given."""
    env: dict[str, Any] = dict(one(docs, "ConfigMap")["data"])
    for name, var in container_env(docs).items():
        env[name] = var.get("value", var.get("valueFrom"))
    return env


def test_every_reviewpulse_variable_is_a_settings_field(
    variant: tuple[str, dict[str, Any]],
) -> None:
    _, values = variant
    names = {n for n in chart_environment(render(values)) if n.startswith("REVIEWPULSE_")}
    unknown = {n for n in names if n.removeprefix("REVIEWPULSE_").lower() not in FIELDS}
    assert names and not unknown, f"not Settings fields: {sorted(unknown)}"


def test_operator_contract_settings_are_set_from_values() -> None:
    values = deep_merge(
        REQUIRED,
        {
            "kafka": {"bootstrapServers": "k1:9092,k2:9092"},
            "schemaRegistry": {"url": "https://registry.test"},
            "llm": {"baseUrl": "https://llm.test/v1", "model": "model-x"},
            "web": {"port": 7077},
            "dataDir": "/state",
        },
    )
    env = chart_environment(render(values))
    expected = {
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "SCHEMA_REGISTRY_URL": "https://registry.test",
        "LLM_BASE_URL": "https://llm.test/v1",
        "LLM_MODEL": "model-x",
        "LLM_API_KEY_FILE": "/var/run/secrets/reviewpulse/llm/api-key",
        "WEB_PORT": "7077",
        "DATA_DIR": "/state",
    }
    assert sorted(expected) == sorted(OPERATOR_CONTRACT)
    assert {k: env.get(f"REVIEWPULSE_{k}") for k in expected} == expected


def test_every_settings_field_has_one_home_in_the_chart() -> None:
    config_props = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    documented = set(config_props["properties"])
    homes = [set(FIRST_CLASS), SECRET, MANAGED, documented]
    assert all(h <= FIELDS for h in homes), f"not Settings fields: {set().union(*homes) - FIELDS}"
    assert sum(len(h) for h in homes) == len(set().union(*homes)), "a field has two homes"
    missing = FIELDS - set().union(*homes)
    assert not missing, (
        f"Settings fields {sorted(missing)} cannot be set from the chart: add them to the "
        "`config` properties of helm/reviewpulse/values.schema.json"
    )
    assert config_props["additionalProperties"] is False


def _json_type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        prop = defs[prop["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in prop:
        prop = next(p for p in prop["anyOf"] if p.get("type") != "null")
    return prop["type"]


def test_config_schema_types_match_settings() -> None:
    config = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    settings = Settings.model_json_schema()
    defs = settings.get("$defs", {})
    for name, prop in config["properties"].items():
        expected = _json_type(settings["properties"][name], defs)
        assert prop["type"] == [expected, "null"], name


def _fake_secret(source: dict[str, Any]) -> str:
    return f"secret-from-{source['secretKeyRef']['key']}"


@pytest.mark.parametrize("set_partitions", [True, False])
def test_rendered_environment_is_valid_settings(
    variant: tuple[str, dict[str, Any]],
    set_partitions: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a pod would be given passes Settings' own validation (types, ranges, combinations)."""
    _, values = variant
    if not set_partitions:  # null leaves the app default: the variable is not set at all
        values = deep_merge(values, {"config": {"topic_partitions": None}})
    env = chart_environment(render(values))
    if not set_partitions:
        assert "REVIEWPULSE_TOPIC_PARTITIONS" not in env
    for name in list(os.environ):
        if name.startswith("REVIEWPULSE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if isinstance(value, dict) and "secretKeyRef" in value:
            value = _fake_secret(value)
        elif isinstance(value, dict):
            continue  # downward API (POD_NAME, POD_NAMESPACE)
        monkeypatch.setenv(name, value)
    if "REVIEWPULSE_LLM_API_KEY_FILE" in env:  # the mounted secret file
        key_file = tmp_path / "api-key"
        key_file.write_text("sk-test\n")
        monkeypatch.setenv("REVIEWPULSE_LLM_API_KEY_FILE", str(key_file))
    settings = Settings()
    assert settings.web_host == "0.0.0.0"
    assert settings.data_dir == Path(values.get("dataDir", "/var/lib/reviewpulse"))
    assert settings.kafka_bootstrap_servers == values["kafka"]["bootstrapServers"]
