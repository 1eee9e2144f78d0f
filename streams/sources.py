"""The names of upstream services (``metadata.source``) as the settings and metrics take them.

Foundation, no Faust and no agents: :mod:`streams.settings` checks
``REVIEWPULSE_SOURCE_TOKEN_BUDGETS`` with :func:`parse_source_budgets` at start, and
:mod:`agents.llm.quotas` enforces the quotas and bounds the metric labels.
"""

from __future__ import annotations

import re
from typing import Any

DEFAULT_SOURCE = "*"
LABEL_MAX_CHARS = 64  # a Prometheus label value we accept from a producer
_SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
DEFAULTED_REASONS = ("unlisted", "empty", "malformed", "overlong")


def parse_source_budgets(text: str) -> dict[str, int]:
    """``"api.review=400000,batch.import=50000,*=100000"`` → {source: tokens per minute}.

    Empty text means no quotas. A source name must be a valid label (what
    :func:`source_reason` accepts) or ``*``; figures are non-negative integers.
    """
    budgets: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, figure = part.partition("=")
        name, figure = name.strip(), figure.strip()
        if not sep or not figure.isdigit():
            raise ValueError(f"source budget {part!r} is not source=tokens_per_minute")
        if name != DEFAULT_SOURCE and source_reason(name) is not None:
            raise ValueError(f"source budget name {name!r} is not a valid source name")
        if name in budgets:
            raise ValueError(f"source {name!r} is given twice")
        budgets[name] = int(figure)
    return budgets


def source_reason(raw: Any) -> str | None:
    """None when ``raw`` is usable as a label, else why not (one of DEFAULTED_REASONS)."""
    if not isinstance(raw, str) or (raw and not _SOURCE_RE.match(raw)):
        return "malformed" if raw != "" else "empty"
    if raw == "":
        return "empty"
    if len(raw) > LABEL_MAX_CHARS:
        return "overlong"
    return None
