"""The processing guarantee setting: exactly_once needs Kafka transactions."""

from __future__ import annotations

import pytest

from streams.settings import ProcessingGuarantee, SettingsError, load_settings


def test_exactly_once_is_refused_on_tansu_with_the_reason() -> None:
    with pytest.raises(SettingsError, match="exactly_once needs Kafka transactions, and Tansu has none"):
        load_settings(processing_guarantee="exactly_once", broker_flavor="tansu")


def test_exactly_once_on_kafka_and_at_least_once_by_default() -> None:
    assert load_settings().processing_guarantee is ProcessingGuarantee.AT_LEAST_ONCE
    assert load_settings(processing_guarantee="exactly_once").processing_guarantee is (
        ProcessingGuarantee.EXACTLY_ONCE)
