"""The README's promises that code can check: every setting documented, two commands first."""

from __future__ import annotations

import re
from pathlib import Path

import agents
import tables
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_table_and_nothing_else_is():
    documented = set(re.findall(r"^\| `REVIEWPULSE_([A-Z0-9_]+)` \|", README, flags=re.M))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), "settings missing from the README table"
    assert documented - fields == set(), "README documents settings that do not exist"


def test_readme_first_screen_gives_the_demo_and_test_commands():
    first_screen = "\n".join(README.splitlines()[:40])
    assert "make demo" in first_screen and "make test" in first_screen
    assert "make test-fast" in first_screen  # the unit tests alone, under a minute


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_our_packages_shadow_no_foreign_ones():
    """`tables` and `agents` share names with PyTables and the OpenAI Agents SDK."""
    for package in (tables, agents):
        assert Path(package.__file__).resolve().parent.parent == ROOT
