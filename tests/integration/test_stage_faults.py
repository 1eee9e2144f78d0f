"""Faults from inside a running worker (issue 30): a send of the restaurant stage that fails.

The failing send is injected into the worker process itself (``faults/sitecustomize.py``):
the first final aggregate it sends is refused. The stage must not skip that batch: the
worker stops (exit 70), restarts from its last commit with stores restored from the
changelogs, and every review and window of the ground truth comes out exact, once; and
``reviewpulse reconcile`` finds nothing missing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.clean_stop import EXIT_STAGE_FAILED
from streams.dev.stack import EMBEDDED_SESSION_TIMEOUT_S, Stack
from tests.integration.conftest import NewStack
from tests.integration.ground_truth import BY_RESTAURANT, ENV, Run, own_stack, owned_partitions
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

FAULTS = Path(__file__).resolve().parent / "faults"


def with_faults(**faults: str) -> dict[str, str]:
    """The chaos settings plus ``faults/sitecustomize.py`` on the worker's path, armed by ``faults``."""
    path = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**ENV, "PYTHONPATH": path, **faults}


@pytest.fixture(scope="module")
def faults_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "stage-faults")


def test_a_stage_batch_whose_send_fails_stops_the_worker_and_nothing_is_lost(faults_stack, tmp_path):
    stack = faults_stack
    data_dir = tmp_path / "worker"
    faulty = stack.add_worker(data_dir=data_dir, name="faulty",
                              extra_env=with_faults(FAULT_FAIL_ONE_SEND_TO="restaurants.aggregates"))
    faulty.wait_ready()
    run = Run(stack, "fault")
    with run.traffic(seconds=20, reviews_per_s=100) as producing:
        code = until(lambda: faulty.proc.poll(), timeout_s=60, what="the worker stopping on the refused send",
                     done=lambda c: c is not None)
        stopped = time.time()
        stack.workers.remove(faulty)
        stack.add_worker(data_dir=data_dir, extra_env=ENV, name="restarted")
        run.finish(producing, timeout_s=90, since_ms=int(stopped * 1000), context="after the refused send")
    log = faulty.log_path.read_text(errors="replace")
    print(f"\n{len(run.reviews)} reviews, {len(run.truth_reviews)} windows; the refused send stopped the "
          f"worker {(stopped * 1000 - run.started_ms) / 1000:.1f} s into the run (exit {code}); "
          f"reviews.enriched repeated {run.enriched_repeats()}")
    assert code == EXIT_STAGE_FAILED, log[-2000:]
    assert "injected by the test" in log and "stopping the worker" in log
    run.assert_exact(since_ms=int(stopped * 1000))
    run.assert_reconciled()


@pytest.fixture(scope="module")
def refetch_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "refetch-kill")


def test_kill_9_during_a_refetch_after_a_rebalance_loses_nothing(refetch_stack, tmp_path):
    """Issue 30: around a rebalance Faust's fetch loop can drop a record; the consumer finds
    the miss, seeks back and fetches the partition again, releasing the records it got past
    the gap (they come again). A kill -9 in that window must lose nothing: the commit never
    passed the missed record nor a released one, so the next owner reads them from the commit.

    The miss and the kill come from inside the worker (``faults/sitecustomize.py``): after
    the rebalance a second worker's arrival causes, one by-restaurant record never reaches
    its stream, and the process SIGKILLs itself while the refetch is under way."""
    stack = refetch_stack
    faulty = stack.add_worker(data_dir=tmp_path / "faulty", name="refetch-faulty",
                              extra_env=with_faults(FAULT_KILL_DURING_REFETCH=BY_RESTAURANT))
    faulty.wait_ready()
    run = Run(stack, "refetch")
    with run.traffic(seconds=24, reviews_per_s=150) as producing:
        until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows of the run closed")
        other = stack.add_worker(data_dir=tmp_path / "other", extra_env=ENV, name="refetch-other")
        code = until(lambda: faulty.proc.poll(), timeout_s=60, done=lambda c: c is not None,
                     what="the faulty worker killing itself during the refetch after the rebalance")
        killed = time.time()
        stack.workers.remove(faulty)
        until(lambda: owned_partitions(other), timeout_s=EMBEDDED_SESSION_TIMEOUT_S + 40, interval_s=0.2,
              what="the other worker owns every partition", done=lambda p: len(p) == stack.partitions)
        run.finish(producing, timeout_s=90, since_ms=int(killed * 1000),
                   context="after the kill in a refetch")
    log = faulty.log_path.read_text(errors="replace")
    dropped = next(line for line in log.splitlines() if "fault: dropped" in line).split("fault: ")[-1]
    print(f"\n{len(run.reviews)} reviews, {len(run.truth_reviews)} windows; {dropped}; killed "
          f"{(killed * 1000 - run.started_ms) / 1000:.1f} s into the run; reviews.enriched repeated "
          f"{run.enriched_repeats()}")
    assert code == -signal.SIGKILL, log[-2000:]
    assert "missed offsets" in log and "fault: kill -9 during the refetch" in log, log[-2000:]
    run.assert_exact(since_ms=int(killed * 1000))
    run.assert_reconciled()
