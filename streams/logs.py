"""Structured logs: one line per event of note, ``key=value`` pairs, trace id included.

Faust installs its own handlers; we only format our logger's records so that a line is
greppable (``event=dead_letter reason=unknown_schema_id trace_id=...``).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("reviewpulse")


def _fmt(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="'):
        return '"' + text.replace('"', '\\"') + '"'
    return text


def event(name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event=<name>`` followed by the fields, in order, skipping None values."""
    if not log.isEnabledFor(level):
        return
    parts = [f"event={name}"]
    parts += [f"{key}={_fmt(value)}" for key, value in fields.items() if value is not None]
    log.log(level, " ".join(parts))
