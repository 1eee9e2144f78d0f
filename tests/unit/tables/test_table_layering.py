"""``tables`` is this project's package. The layers themselves are import-linter's contracts
(pyproject.toml, ``lint-imports`` in ``make test``), which see deferred imports too."""

from __future__ import annotations

from pathlib import Path

import tables

TABLES_DIR = Path(tables.__file__).parent


def test_tables_package_is_ours_not_pytables() -> None:
    assert TABLES_DIR.parent == Path(__file__).resolve().parents[3]
