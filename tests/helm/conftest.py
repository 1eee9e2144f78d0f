"""Fixtures of the Helm chart tests (helpers live in helm_render.py)."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from helm_render import VARIANTS


@pytest.fixture(params=sorted(VARIANTS), ids=str)
def variant(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, VARIANTS[request.param]


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: apt-get install -y prometheus (Debian ships it there)")
    return path
