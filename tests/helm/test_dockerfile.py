"""The Dockerfile builds from files the context really holds, and runs `reviewpulse` as non-root.

No Docker engine exists on CI, so the Dockerfile is read, not built: COPY sources must exist
and survive .dockerignore (moby's rules: last matching pattern wins, a pattern matching a
parent directory matches its files), the final stage must drop root and keep compilers out,
and the ENTRYPOINT must be a console script the wheel installs.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their (INSTRUCTION, arguments) pairs; continuations joined, comments dropped."""
    logical, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            c = pattern[i]
            out += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def is_excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """moby/patternmatcher: the last rule matching the path or one of its parents decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def context_copies() -> list[str]:
    """Sources of every COPY/ADD that reads the build context (not --from another stage)."""
    sources = []
    for stage in parse_dockerfile(DOCKERFILE.read_text()):
        for instruction, args in stage.instructions:
            if instruction not in {"COPY", "ADD"}:
                continue
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            if any(w.startswith("--from") for w in shlex.split(args)):
                continue
            sources.extend(words[:-1])
    return sources


def test_every_copy_source_is_in_the_build_context() -> None:
    rules = dockerignore_rules()
    sources = context_copies()
    assert sources
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: not in the repository"
        assert not is_excluded(source, rules), f"COPY {source}: excluded by .dockerignore"
        if path.is_dir():
            files = [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
            kept = [p for p in files if not is_excluded(str(p.relative_to(REPO)), rules)]
            assert kept == files, f"COPY {source}: .dockerignore drops {set(files) - set(kept)}"


def test_dockerignore_keeps_caches_and_local_state_out() -> None:
    rules = dockerignore_rules()
    for path in [
        "streams/__pycache__/app.cpython-311.pyc",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/unit/conftest.py",
        "data/rocksdb/x",
    ]:
        assert is_excluded(path, rules), path


def test_every_python_package_is_copied_into_the_build() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {s.strip("/").split("/")[0] for s in context_copies()}
    top_level = {
        p.name for p in REPO.iterdir() if p.is_dir() and any(fnmatch.fnmatch(p.name, i) for i in includes)
    }
    assert top_level <= copied, f"packages the wheel would miss: {top_level - copied}"
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied


def test_final_stage_runs_as_non_root_without_build_tools() -> None:
    final = parse_dockerfile(DOCKERFILE.read_text())[-1]
    users = [args for instruction, args in final.instructions if instruction == "USER"]
    assert users, "the final stage never drops root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root USER (runAsNonRoot checks the uid)"
    assert uid == "10001"  # the chart's podSecurityContext.runAsUser
    runs = " ".join(args for instruction, args in final.instructions if instruction == "RUN")
    for tool in ("build-essential", "gcc", "g++", "make ", "apt-get install"):
        assert tool not in runs, f"final stage installs {tool.strip()}"
    assert "--no-index" in runs  # only the builder's wheels, nothing fetched or compiled


def test_entrypoint_is_the_projects_console_script() -> None:
    stages = parse_dockerfile(DOCKERFILE.read_text())
    assert len(stages) >= 2, "multi-stage: builder + runtime"
    final = stages[-1]
    assert final.base.startswith(("python:3.11-slim", "${PYTHON_IMAGE}"))
    args = dict(final.instructions)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = [w.strip('"') for w in re.findall(r'"[^"]*"', args["ENTRYPOINT"])]
    assert entrypoint == ["reviewpulse"] and entrypoint[0] in scripts
    assert args["CMD"] == '["worker"]'
    assert args["EXPOSE"] == "6066"
    assert "/var/lib/reviewpulse" in args["VOLUME"]
    assert "WORKDIR" in args


def test_default_python_image_is_3_11_slim() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
