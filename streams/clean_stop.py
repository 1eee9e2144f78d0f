"""After an unclean stop the local stores are wiped, and the tables restored from their changelogs.

A table writes its RocksDB store before its changelog records are acknowledged, so after
``kill -9`` (an OOM kill, a node lost, a worker stopping itself on a failed batch) the local
store can hold state the changelog never got. The restarted worker would then take the
replayed input for "already seen" and skip it, and the next owner of the partition, reading
the changelog, would lose those counts (issue 30, finding 3). So "seen" must be durable: a
worker marks its data dir while it runs and unmarks it after a clean stop; a worker that
finds the mark wipes its table stores, and Faust restores them from the changelogs, which
only ever hold acknowledged state. Kafka Streams does the same with its checkpoint file
(a task without one restores from the changelog). The price is a full restore after a
crash, never after a clean stop (a rolling update).

:func:`stop_now` is the other half: a failure inside the stage that retrying the batch in
this process cannot undo stops the worker at once, uncleanly, so it restarts from its last
commit with stores restored from what is durable (DESIGN §12).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

MARKER = "reviewpulse-running"
EXIT_STAGE_FAILED = 70  # EX_SOFTWARE: the orchestrator restarts the worker


def begin(data_dir: Path, tabledir: Path) -> bool:
    """Mark ``data_dir`` as in use; wipe ``tabledir`` first if the last stop was unclean.
    Returns whether it wiped."""
    marker = data_dir / MARKER
    unclean = marker.exists()
    if unclean:
        shutil.rmtree(tabledir, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{os.getpid()}\n")
    return unclean


def end(data_dir: Path) -> None:
    """The worker stopped cleanly: its stores match what it sent, keep them."""
    (data_dir / MARKER).unlink(missing_ok=True)


def stop_now(reason: str) -> None:
    """Stop the process at once, as ``kill -9`` would, after saying why: the data dir stays
    marked, so the restart wipes the stores and restores them from the changelogs."""
    logging.getLogger("reviewpulse").critical("stopping the worker: %s", reason)
    for handler in logging.getLogger().handlers + logging.getLogger("reviewpulse").handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_STAGE_FAILED)
