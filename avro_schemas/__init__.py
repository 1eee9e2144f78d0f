"""Every Avro schema ReviewPulse reads or writes, one ``<RecordName>.avsc`` each.

A package (not just a folder) so the schemas ship inside the wheel and load by name.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent


def schema_path(record_name: str) -> Path:
    return SCHEMA_DIR / f"{record_name}.avsc"


@cache
def schema_text(record_name: str) -> str:
    """The .avsc text exactly as committed (what gets registered)."""
    return schema_path(record_name).read_text()


def record_names() -> list[str]:
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))
