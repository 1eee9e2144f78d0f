"""Repository-wide test set-up: the repository root is importable, ours shadow nothing, and
``--broker`` picks the broker of every integration test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from streams.dev.broker import BROKER_KINDS

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker", choices=BROKER_KINDS, default=os.environ.get("REVIEWPULSE_DEV_BROKER", "kafka"),
        help="the broker every integration test runs on: kafka (Apache Kafka from its Maven jars, "
             "the default) or tansu (the embedded default of the demo); REVIEWPULSE_DEV_BROKER sets it too")


@pytest.fixture(scope="session")
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--broker"))
