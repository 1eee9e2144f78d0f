"""The restaurant stage as parts; :mod:`agents.stage.coordinator` reads as the path of a batch.

Modules, each one concern: ``ports`` (what the stage needs from the world), ``jobs`` (an
owed review, and the ledger of owed reviews), ``watermarks`` (ticks to watermarks),
``batch`` (what one batch of a partition reads and writes), ``fold`` (first sight, replays,
duplicates), ``closing`` (due windows), ``outputs`` (every send), ``enricher`` (the queue
and LLM workers beside the flow), ``completion`` (an answer's outcome sent), ``joins``
(answers joined into panes), ``costs`` (daily spend and its cap), ``publish`` (durability,
acks, the unjoined bound), ``coordinator`` (the two paths).
"""

from agents.stage.coordinator import StageCore
from agents.stage.jobs import Job
from agents.stage.ports import OutputTopics, Ports

__all__ = ["Job", "OutputTopics", "Ports", "StageCore"]
