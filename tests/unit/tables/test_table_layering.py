"""Layering the web view and the stream rely on: tables/ never imports agents/."""

from __future__ import annotations

import ast
from pathlib import Path

import tables

TABLES_DIR = Path(tables.__file__).parent


def test_tables_package_is_ours_not_pytables() -> None:
    assert TABLES_DIR.parent == Path(__file__).resolve().parents[3]


def test_no_module_of_tables_imports_agents() -> None:
    offenders = []
    for path in sorted(TABLES_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "agents" or n.startswith("agents.")]
    assert not offenders, offenders
