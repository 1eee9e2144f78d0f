"""What every agent of this worker shares: the app, settings, runtime, tables, LLM services.

Built at import (autodiscovery imports every agent module) without I/O: connections are
opened by the runtime service when the worker starts.
"""

from __future__ import annotations

from agents.enrich import LLMServices
from streams.app import app
from streams.runtime import Runtime, install
from tables.rules import RuleThresholds
from tables.state import Tables, declare_tables
from tables.windows import WindowSpec

settings = app.settings
runtime: Runtime = install(app)
tables: Tables = declare_tables(app, settings)
llm: LLMServices = LLMServices.from_settings(settings)
spec = WindowSpec.from_settings(settings)
thresholds = RuleThresholds.from_settings(settings)
