"""Faults from inside a running worker (issue 30): a send of the restaurant stage that fails.

The failing send is injected into the worker process itself (``faults/sitecustomize.py``):
the first final aggregate it sends is refused. The stage must not skip that batch: the
worker stops (exit 70), restarts from its last commit with stores restored from the
changelogs, and every review and window of the ground truth comes out exact, once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_chaos_exactness import ENV, Run, own_stack

from streams.clean_stop import EXIT_STAGE_FAILED
from streams.dev.stack import Stack
from tests.integration.conftest import NewStack
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

FAULTS = Path(__file__).resolve().parent / "faults"


@pytest.fixture(scope="module")
def faults_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "stage-faults")


def test_a_stage_batch_whose_send_fails_stops_the_worker_and_nothing_is_lost(faults_stack, tmp_path):
    stack = faults_stack
    data_dir = tmp_path / "worker"
    faulty = stack.add_worker(data_dir=data_dir, name="faulty", extra_env={
        **ENV, "PYTHONPATH": str(FAULTS), "FAULT_FAIL_ONE_SEND_TO": "restaurants.aggregates"})
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
