"""When a worker is ready: its topics exist, it joined its group, got an assignment, restored its tables.

Faust has no single flag for this. ``app.rebalancing`` is False before the first join (so
it alone answered "ready" half a session timeout before the worker had any partition);
``app.tables.recovery.completed`` is set once the first assignment's tables are restored
and the streams resumed, and stays set; ``in_recovery`` and the flow control cover later
rebalances (Faust suspends ``app.flow_control`` while it rebalances and resumes it after
recovery). The assignment itself arrives through the ``on_partitions_assigned`` signal. A
worker whose assignment is empty (more workers than partitions) is ready once it joined.
"""

from __future__ import annotations

from typing import Any


class Readiness:
    """Tracks the signals of one app; :meth:`checks` names each condition and whether it holds."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.topics_ensured = False
        self.assignments = 0
        app.on_partitions_assigned.connect(self._on_assigned)

    async def _on_assigned(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        self.assignments += 1

    def checks(self) -> dict[str, bool]:
        app = self.app
        recovery = app.tables.recovery if app.tables else None
        return {
            "topics_exist": self.topics_ensured,
            "assigned": self.assignments > 0,
            "not_rebalancing": not app.rebalancing,
            "tables_restored": bool(recovery and recovery.completed.is_set() and not recovery.in_recovery),
            "flowing": app.flow_control.is_active(),
        }

    @property
    def ready(self) -> bool:
        return all(self.checks().values())
