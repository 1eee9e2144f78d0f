"""The error tree in streams/errors.py names every error class we define: a caller reads it
to know what ``except ReviewPulseError`` catches and what a new class must subclass."""

from __future__ import annotations

import importlib
import pkgutil

import agents
import schema_registry
import streams
import tables
from streams import errors
from streams.errors import ReviewPulseError


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def test_the_documented_tree_names_every_reviewpulse_error() -> None:
    for package in (agents, schema_registry, streams, tables):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module.name.startswith(("streams.dev", "agents.restaurant", "agents.decode", "agents.retry",
                                       "agents.ticks", "tables.views", "tables.review_views",
                                       "tables.routing", "streams.app", "streams.runtime", "streams.cli")):
                continue  # the app and its bindings: built at import, and define no errors
            importlib.import_module(module.name)
    ours = {cls for cls in _subclasses(ReviewPulseError) if cls.__module__.split(".")[0] in
            {"agents", "schema_registry", "streams", "tables"}}
    assert len(ours) > 20
    missing = sorted(cls.__name__ for cls in ours if cls.__name__ not in (errors.__doc__ or ""))
    assert not missing, f"error classes missing from the tree in streams/errors.py: {missing}"
