"""End-to-end benchmark of the ReviewPulse pipeline against the embedded stack.

Run: ``.venv/bin/python -m bench.pipeline`` (or ``python bench/run.py``); ``--help`` for
sizes. It starts Tansu, the registry, the LLM simulator and one worker subprocess
(``streams.dev.stack``), drives traffic with confluent-kafka's AvroSerializer
(``bench.traffic``), reads results back from the broker, and prints figures. It asserts
nothing about time: the targets are printed beside the figures for a human to judge.

Phases (one stack, one worker, one consumer group join; the simulator's latency is
changed between phases through its ``/_sim/config`` endpoint):

a0   throughput, LLM 0 ms: N reviews pre-produced, then the worker starts and catches up.
a200 throughput, LLM 200 ms: N reviews produced as fast as possible while it runs.
b    latency at a steady 1,000 reviews/s, LLM 50 ms.
c    tokens per review, from every ``reviews.enriched`` record of the run.
d    the naive Faust app (``bench.naive_app``) over the same ``reviews.created``, no LLM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.measure import CpuMeter, RecordCounter, follow, percentile, visible_latencies_ms
from bench.traffic import ReviewProducer
from streams.dev.procs import free_port, spawn, stop
from streams.dev.reader import TopicReader
from streams.dev.stack import Process, Stack
from streams.settings import Settings
from streams.topics import REVIEWS_CREATED, REVIEWS_ENRICHED

ROOT = Path(__file__).resolve().parents[1]
APP_ID = "reviewpulse"
PANES_CHANGELOG = f"{APP_ID}-panes-changelog"
NAIVE_APP_ID = "reviewpulse-bench-naive"
NAIVE_CHANGELOG = f"{NAIVE_APP_ID}-naive-window-totals-changelog"

# Targets of issue 4 (figures to compare against, not assertions).
TARGET_EVENTS_PER_S = 4_800
TARGET_P99_MS = 400
TARGET_LLM_SHARE = 0.90

# The worker as the bench runs it: product defaults except what the bench must change.
WORKER_ENV = {
    # The global budget (500k tokens/min) would turn most of a 5k ev/s run into
    # BUDGET_SKIPPED reviews that never reach the LLM; the bench measures the LLM path.
    "REVIEWPULSE_TOKEN_BUDGET_PER_MINUTE": "1000000000",
    "REVIEWPULSE_LOG_LEVEL": "info",
}


def sim_latency(llm: Process, latency_ms: float) -> None:
    httpx.post(f"{llm.url}/_sim/config", json={"latency_ms": latency_ms}, timeout=5).raise_for_status()


def missing(progress: Any, phase: str) -> None:
    if progress.done < progress.target:
        print(f"  !! {phase}: only {progress.done} of {progress.target} records arrived "
              "(stalled or timed out); rates below cover what arrived")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C (as the demo does)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while the bench stops its processes, then restore the handlers."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def in_thread(fn: Any, *args: Any, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def py_spy(pid: int, *, out: Path, duration_s: int) -> subprocess.Popen[bytes] | None:
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        print(f"  (no {exe}: profile skipped)")
        return None
    return subprocess.Popen([str(exe), "record", "-p", str(pid), "-d", str(duration_s), "-r", "100",
                             "-f", "raw", "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.log_dir = ROOT / "artifacts" / "bench" / time.strftime("%Y%m%d-%H%M%S")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stack = Stack(log_dir=self.log_dir, partitions=args.partitions)
        self.results: dict[str, Any] = {}
        self.settings = Settings()  # defaults; the bench worker changes no window setting
        self.helpers: list[subprocess.Popen[bytes]] = []  # started beside the stack (py-spy)

    def run(self) -> dict[str, Any]:
        """Every phase; whatever happens (SIGINT, SIGTERM, an error), every process started is stopped."""
        args = self.args
        counters: list[RecordCounter] = []
        try:
            stack = self.stack.start(llm_args=["--latency-ms", "0"])
            assert stack.broker and stack.registry and stack.llm
            bootstrap = stack.broker.bootstrap
            print(f"stack up (logs: {self.log_dir.relative_to(ROOT)}); "
                  f"concurrency={args.llm_concurrency} batch={args.llm_batch_size}", flush=True)
            self.producer = ReviewProducer(bootstrap=bootstrap, registry_url=stack.registry.url)
            self.enriched = RecordCounter(bootstrap, REVIEWS_ENRICHED)
            self.created = RecordCounter(bootstrap, REVIEWS_CREATED)
            counters += [self.enriched, self.created]
            self.phase_a0(stack)
            if "a200" in args.phases:
                self.phase_a200(stack)
            if "b" in args.phases:
                self.phase_b(stack)
            self.phase_c(stack)
            if "d" in args.phases:
                self.phase_d(stack)
        finally:
            with signals_deferred():  # a second Ctrl-C must not cut the clean-up short
                for counter in counters:
                    counter.close()
                for proc in self.helpers:
                    stop(proc)
                self.stack.stop()
        return self.results

    def cpu_meter(self, stack: Stack) -> CpuMeter:
        assert stack.broker and stack.llm and stack.registry
        pids = {"worker": self.worker.proc.pid, "tansu": stack.broker.proc.pid,
                "llm-sim": stack.llm.proc.pid, "registry": stack.registry.proc.pid}
        return CpuMeter(pids)

    def print_cpu(self, meter: CpuMeter, phase: str) -> None:
        shares = meter.shares()
        self.results.setdefault("cpu", {})[phase] = shares
        print(f"   cores busy during {phase}: " + ", ".join(f"{k} {v:.2f}" for k, v in shares.items())
              + f" (machine: {os.cpu_count()})")

    def worker_env(self) -> dict[str, str]:
        env = dict(WORKER_ENV)
        env["REVIEWPULSE_LLM_CONCURRENCY"] = str(self.args.llm_concurrency)
        env["REVIEWPULSE_LLM_BATCH_SIZE"] = str(self.args.llm_batch_size)
        for item in self.args.worker_env:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    # --- a: throughput -----------------------------------------------------------------------
    def phase_a0(self, stack: Stack) -> None:
        n = self.args.events_0ms
        assert stack.llm
        sim_latency(stack.llm, 0)
        started = time.monotonic()
        self.producer.produce(n)
        produce_s = time.monotonic() - started
        print(f"a0: pre-produced {n} reviews in {produce_s:.1f} s ({n / produce_s:,.0f}/s); "
              "starting the worker")
        base = self.enriched()
        worker = stack.add_worker(data_dir=self.log_dir / "worker-data", extra_env=self.worker_env())
        self.worker = worker
        profiler = None
        # From the first enriched review: the steady part, not start-up.
        follow(lambda: self.enriched() - base, target=1, timeout_s=120)
        meter = self.cpu_meter(stack)
        if self.args.profile:  # distorts the a0 figures; profile runs are not measurement runs
            profiler = py_spy(worker.proc.pid, out=self.log_dir / "a0.pyspy.txt",
                              duration_s=self.args.profile)
            if profiler is not None:
                self.helpers.append(profiler)
        progress = follow(lambda: self.enriched() - base, target=n, timeout_s=600)
        if profiler is not None:
            profiler.wait()
        missing(progress, "a0")
        self.print_cpu(meter, "a0")
        rate = progress.rate_between(0.1, 0.9)
        self.results["a0"] = {"events": n, "steady_ev_s": rate,
                              "first_to_last_s": progress.first_to_last_s(),
                              "overall_ev_s": n / progress.first_to_last_s()}
        print(f"a0: {rate:,.0f} ev/s steady (10%->90%), first->last enriched "
              f"{progress.first_to_last_s():.1f} s ({n / progress.first_to_last_s():,.0f} ev/s)")

    def phase_a200(self, stack: Stack) -> None:
        n = self.args.events_200ms
        assert stack.llm
        sim_latency(stack.llm, 200)
        base = self.enriched()
        thread = in_thread(self.producer.produce, n)
        meter = self.cpu_meter(stack)
        progress = follow(lambda: self.enriched() - base, target=n, timeout_s=900)
        thread.join()
        missing(progress, "a200")
        self.print_cpu(meter, "a200")
        rate = progress.rate_between(0.1, 0.9)
        ceiling = self.args.llm_concurrency * self.args.llm_batch_size / 0.2
        self.results["a200"] = {"events": n, "steady_ev_s": rate, "ceiling_ev_s": ceiling,
                                "share": rate / ceiling}
        print(f"a200: {rate:,.0f} ev/s steady; ceiling concurrency x batch / latency = "
              f"{self.args.llm_concurrency} x {self.args.llm_batch_size} / 0.2 s = {ceiling:,.0f} ev/s "
              f"-> {rate / ceiling:.0%}")

    # --- b: latency --------------------------------------------------------------------------
    def phase_b(self, stack: Stack) -> None:
        args = self.args
        assert stack.broker and stack.llm and stack.registry
        sim_latency(stack.llm, 50)
        time.sleep(1.0)  # let the previous phase's last batch drain
        reader = TopicReader(stack.broker.bootstrap, registry_url=stack.registry.url)
        raw = TopicReader(stack.broker.bootstrap)  # the changelog is JSON, not Avro
        try:
            reader.read_new(REVIEWS_ENRICHED)  # skip to the end
            raw.read_new(PANES_CHANGELOG)
            expected = int(args.steady_rate * args.steady_s)
            thread = in_thread(self.producer.produce_paced, rate_per_s=args.steady_rate,
                               duration_s=args.steady_s)
            base = self.enriched()
            progress = follow(lambda: self.enriched() - base, target=expected, timeout_s=600)
            thread.join()
            missing(progress, "b")
            time.sleep(0.5)  # the last batch's table writes follow its acknowledged outputs
            records = reader.read_new(REVIEWS_ENRICHED) + raw.read_new(PANES_CHANGELOG)
        finally:
            reader.close()
            raw.close()
        enriched = [r for r in records if r.topic == REVIEWS_ENRICHED]
        changelog = [r for r in records if r.topic == PANES_CHANGELOG]
        enrich_ms, visible_ms, unmatched = visible_latencies_ms(
            enriched, changelog, pane_size_ms=self.settings.pane_size_s * 1000)
        warm = int(len(enriched) * 0.1)  # the first 10% include the latency switch
        self.results["b"] = {
            "events": len(enriched), "rate_ev_s": progress.rate_between(0.1, 0.9),
            "enriched_p50_ms": percentile(enrich_ms, 50), "enriched_p99_ms": percentile(enrich_ms, 99),
            "visible_p50_ms": percentile(visible_ms, 50) if visible_ms else None,
            "visible_p99_ms": percentile(visible_ms, 99) if visible_ms else None,
            "visible_p99_after_warmup_ms": percentile(visible_ms[warm:], 99) if visible_ms[warm:] else None,
            "visible_max_ms": max(visible_ms) if visible_ms else None,
            "unmatched": unmatched,
        }
        b = self.results["b"]
        print(f"b: {len(enriched)} reviews at {args.steady_rate:,.0f}/s for {args.steady_s:.0f} s, LLM 50 ms")
        print(f"   occurred_at -> enriched_at (reviews.enriched):       p50 {b['enriched_p50_ms']:.0f} ms"
              f"  p99 {b['enriched_p99_ms']:.0f} ms")
        if visible_ms:
            print(f"   occurred_at -> pane written (panes changelog stamp): p50 {b['visible_p50_ms']:.0f} ms"
                  f"  p99 {b['visible_p99_ms']:.0f} ms  max {b['visible_max_ms']:.0f} ms"
                  f"  (p99 without first 10%: {b['visible_p99_after_warmup_ms']:.0f} ms; "
                  f"unmatched {unmatched})")
        self._b_records = enriched

    # --- c: tokens ---------------------------------------------------------------------------
    def phase_c(self, stack: Stack) -> None:
        assert stack.broker and stack.registry
        reader = TopicReader(stack.broker.bootstrap, registry_url=stack.registry.url)
        try:
            records = reader.read_new(REVIEWS_ENRICHED, timeout_s=30)
        finally:
            reader.close()
        statuses = Counter(r.value["status"] for r in records)
        event_ids = {r.value["event_id"] for r in records}
        llm = [r.value for r in records if r.value["status"] == "ENRICHED" and not r.value["cache_hit"]]
        tokens_in = sum(v["tokens_in"] for v in llm) / max(1, len(llm))
        tokens_out = sum(v["tokens_out"] for v in llm) / max(1, len(llm))
        cost = sum(v["cost_micro_usd"] for v in llm) / max(1, len(llm))
        produced = self.created()
        self.results["c"] = {"records": len(records), "distinct": len(event_ids), "produced": produced,
                             "statuses": dict(statuses), "tokens_in": tokens_in,
                             "tokens_out": tokens_out, "cost_micro_usd": cost}
        print(f"c: {len(records)} reviews.enriched for {produced} produced ({len(event_ids)} distinct); "
              f"status {dict(statuses)}")
        print(f"   per LLM-enriched review: {tokens_in:.1f} tokens in, {tokens_out:.1f} out, "
              f"{cost:.1f} micro-USD (batch {self.args.llm_batch_size}: prompt shared by the batch)")

    # --- d: the naive baseline ---------------------------------------------------------------
    def phase_d(self, stack: Stack) -> None:
        assert stack.broker
        for worker in list(stack.workers):  # give the baseline the whole machine
            worker.stop()
        stack.workers.clear()
        n = self.created()
        port = free_port()
        env = {"BENCH_NAIVE_BOOTSTRAP": stack.broker.bootstrap,
               "BENCH_NAIVE_DATA_DIR": str(self.log_dir / "naive-data"),
               "BENCH_NAIVE_PARTITIONS": str(self.args.partitions),
               "BENCH_NAIVE_WEB_PORT": str(port)}
        log_path = self.log_dir / "naive.log"
        proc = spawn([sys.executable, "-m", "bench.naive_app", "worker", "-l", "warn",
                      "--web-port", str(port), "--web-host", "127.0.0.1"], log_path=log_path, env=env)
        try:
            counter = RecordCounter(stack.broker.bootstrap, NAIVE_CHANGELOG)
            progress = follow(counter, target=n, timeout_s=900)
            counter.close()
            missing(progress, "d")
        finally:
            stop(proc)
        rate = progress.rate_between(0.1, 0.9)
        self.results["d"] = {"events": n, "steady_ev_s": rate}
        print(f"d: naive Faust (group_by + per-event windowed table write, no LLM): {rate:,.0f} ev/s "
              f"over {n} reviews")


def summary(results: dict[str, Any], args: argparse.Namespace) -> None:
    a0, a200, b = results.get("a0", {}), results.get("a200", {}), results.get("b", {})
    d = results.get("d", {})
    print("\n=== ReviewPulse bench (one worker; figures, not assertions) ===")
    nan = float("nan")
    c = results.get("c", {})
    rows = [
        ("a. events/s, LLM 0 ms", f"{a0.get('steady_ev_s', nan):,.0f}", f">= {TARGET_EVENTS_PER_S:,}"),
        ("a. events/s, LLM 200 ms",
         f"{a200.get('steady_ev_s', nan):,.0f} ({a200.get('share', nan):.0%} of "
         f"{a200.get('ceiling_ev_s', nan):,.0f})", f">= {TARGET_LLM_SHARE:.0%} of ceiling"),
        ("b. p50 / p99 occurred->enriched",
         f"{b.get('enriched_p50_ms', nan):.0f} / {b.get('enriched_p99_ms', nan):.0f} ms", ""),
        ("b. p50 / p99 occurred->pane written",
         f"{b.get('visible_p50_ms') or nan:.0f} / {b.get('visible_p99_ms') or nan:.0f} ms",
         f"p99 <= {TARGET_P99_MS} ms"),
        ("c. tokens in / out per review",
         f"{c.get('tokens_in', nan):.1f} / {c.get('tokens_out', nan):.1f}", ""),
        ("d. naive Faust baseline events/s",
         f"{d['steady_ev_s']:,.0f}" if d else "skipped", ""),
    ]
    for name, value, target in rows:
        print(f"{name:<38} {value:<28} {target}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events-0ms", type=int, default=40_000, help="reviews in phase a0")
    parser.add_argument("--events-200ms", type=int, default=6_000, help="reviews in phase a200")
    parser.add_argument("--steady-rate", type=float, default=1_000.0, help="reviews/s in phase b")
    parser.add_argument("--steady-s", type=float, default=30.0, help="duration of phase b")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--llm-concurrency", type=int, default=Settings().llm_concurrency)
    parser.add_argument("--llm-batch-size", type=int, default=Settings().llm_batch_size)
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra REVIEWPULSE_* setting for the worker (repeatable)")
    parser.add_argument("--phases", default="a0,a200,b,c,d",
                        help="comma separated; a0 and c always run (a0 starts the worker)")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                        help="py-spy record the worker for this long in phase a0 (raw, in the log dir)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.phases = set(args.phases.split(","))
    signal.signal(signal.SIGTERM, _interrupt)  # SIGINT raises KeyboardInterrupt already
    bench = Bench(args)
    try:
        results = bench.run()
    except KeyboardInterrupt:
        print("\ninterrupted: every process the bench started was stopped", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    summary(results, args)


if __name__ == "__main__":
    main()
