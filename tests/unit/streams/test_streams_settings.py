"""Settings: one SettingsError lists every problem; combinations are checked; secrets stay secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.settings import FailurePolicy, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no REVIEWPULSE_* from the shell, and Faust's names present."""
    for name in list(os.environ):
        if name.startswith("REVIEWPULSE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BROKER_URL", "kafka://faust-must-not-read-this:9092")
    monkeypatch.setenv("WEB_PORT", "1")


def _error(**overrides: object) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(**overrides)
    return str(info.value)


def test_defaults_are_valid_and_faust_variables_are_ignored() -> None:
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.web_port == 6066
    assert settings.llm_failure_policy is FailurePolicy.RETRY_THEN_FALLBACK


def test_environment_variables_are_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWPULSE_LLM_MODEL", "gpt-x")
    monkeypatch.setenv("REVIEWPULSE_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("REVIEWPULSE_LLM_FAILURE_POLICY", "fallback_now")
    settings = load_settings()
    assert (settings.llm_model, settings.topic_partitions) == ("gpt-x", 12)
    assert settings.llm_failure_policy is FailurePolicy.FALLBACK_NOW


def test_one_error_lists_every_invalid_field() -> None:
    message = _error(topic_partitions=0, llm_timeout_s=-1, log_level="loud", store="redis://",
                     web_port=70_000, alert_negative_share=1.5)
    for name in ("REVIEWPULSE_TOPIC_PARTITIONS", "REVIEWPULSE_LLM_TIMEOUT_S", "REVIEWPULSE_LOG_LEVEL",
                 "REVIEWPULSE_STORE", "REVIEWPULSE_WEB_PORT", "REVIEWPULSE_ALERT_NEGATIVE_SHARE"):
        assert name in message
    assert message.count("\n  - ") == 6


def test_one_error_lists_every_invalid_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWPULSE_LLM_BATCH_SIZE", "0")
    monkeypatch.setenv("REVIEWPULSE_KAFKA_SECURITY_PROTOCOL", "TLS")
    monkeypatch.setenv("REVIEWPULSE_DEDUPE_TTL_S", "ten")
    message = _error()
    for name in ("REVIEWPULSE_LLM_BATCH_SIZE", "REVIEWPULSE_KAFKA_SECURITY_PROTOCOL",
                 "REVIEWPULSE_DEDUPE_TTL_S"):
        assert name in message


def test_one_error_lists_every_broken_combination(tmp_path: Path) -> None:
    message = _error(hopping_size_s=900, hopping_step_s=70,
                     broker_session_timeout_s=6, broker_heartbeat_interval_s=3,
                     processing_lag_slo_s=10, processing_lag_critical_s=5,
                     llm_backoff_base_s=2, llm_backoff_max_s=1,
                     kafka_security_protocol="SASL_SSL",
                     llm_api_key_file=tmp_path / "missing")
    for fragment in ("hopping_size_s must be a multiple", "broker_heartbeat_interval_s",
                     "processing_lag_critical_s", "llm_backoff_max_s", "SASL protocols need",
                     "is not a readable file"):
        assert fragment in message


def test_valid_combinations_pass(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("  sk-from-file\n")
    settings = load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u",
                             kafka_sasl_password="p", llm_api_key_file=key_file,
                             window_size_s=60, hopping_step_s=45)
    assert settings.llm_api_key_value().get_secret_value() == "sk-from-file"
    assert settings.pane_size_s == 15  # gcd(60, 45): windows are unions of panes


def test_money_settings_convert_to_integer_micro_dollars() -> None:
    settings = load_settings(restaurant_daily_cost_cap_usd=0.002, alert_window_cost_usd=0.5)
    assert settings.restaurant_daily_cost_cap_micro_usd == 2_000
    assert settings.alert_window_cost_micro_usd == 500_000


def test_secrets_never_appear_in_repr_str_dump_or_errors() -> None:
    secrets = {"llm_api_key": "sk-unit-secret-1", "kafka_sasl_password": "sasl-secret-2",
               "schema_registry_password": "registry-secret-3", "web_auth_token": "web-secret-4"}
    settings = Settings(**secrets)
    shown = " ".join([repr(settings), str(settings), settings.model_dump_json()])
    for value in secrets.values():
        assert value not in shown
    message = _error(topic_partitions=0, **secrets)
    for value in secrets.values():
        assert value not in message


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.web_port = 1  # type: ignore[misc]


@pytest.mark.parametrize("replicas", ["0", "2"])
def test_table_standby_replicas_reach_faust(monkeypatch: pytest.MonkeyPatch, replicas: str) -> None:
    """Standbys cost a worker every changelog record of the partitions it backs up and buy a
    faster failover: the operator's choice, not a constant of the code."""
    from streams.app import create_app

    assert load_settings().table_standby_replicas == 1  # Faust's default: a warm copy for failover
    monkeypatch.setenv("REVIEWPULSE_TABLE_STANDBY_REPLICAS", replicas)
    assert create_app(load_settings()).conf.table_standby_replicas == int(replicas)
