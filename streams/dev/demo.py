"""`reviewpulse demo`: the whole embedded system in one process tree, narrated on stdout.

Starts a broker (Tansu by default; Apache Kafka with ``--broker kafka``), the registry, the
LLM simulator (50 ms latency, a few failures), one worker with the web view, and sample
traffic; then prints what reaches the output topics.
Windows are shortened (10 s tumbling, 60 s hopping every 10 s) so aggregates and alerts
appear within a minute. Ctrl-C stops everything, by PID, in reverse order.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from streams.dev.reader import Record, TopicReader
from streams.dev.sample import produce_sample
from streams.dev.stack import Stack
from streams.topics import AGGREGATES, CRITICAL_ALERT, DLQ, RESTAURANT_ALERTS, REVIEWS_ENRICHED

DEMO_ENV = {
    "REVIEWPULSE_WINDOW_SIZE_S": "10",
    "REVIEWPULSE_HOPPING_SIZE_S": "60",
    "REVIEWPULSE_HOPPING_STEP_S": "10",
    "REVIEWPULSE_WINDOW_GRACE_S": "3",
    "REVIEWPULSE_RESTAURANT_DAILY_COST_CAP_USD": "0.01",
    "REVIEWPULSE_LLM_RETRY_DELAY_S": "1",
}
WINDOW_SETTLE_S = 2.0
SIMULATOR_ARGS = ["--latency-ms", "50", "--jitter-ms", "30", "--error-rate", "0.02", "--rate-429", "0.01"]


def _ts(value: Any) -> str:
    return value.strftime("%H:%M:%S") if isinstance(value, datetime) else str(value)


def describe(record: Record) -> str | None:
    v = record.value
    if record.topic == REVIEWS_ENRICHED:
        return (f"enriched   {v['restaurant_id']:9} {v['rating']}* {v['sentiment']:8} "
                f"{v['sentiment_score']:+.2f} {v['status']:14} {','.join(v['categories'])[:30]:30} "
                f"\"{v['text'][:48]}\"")
    if record.topic == CRITICAL_ALERT:
        return f"CRITICAL   {v['restaurant_id']:9} \"{v['text'][:70]}\"  trace={v['trace_id']}"
    if record.topic == RESTAURANT_ALERTS:
        return f"ALERT      {v['restaurant_id']:9} {v['rule']:15} {v['severity']:8} {v['message']}"
    if record.topic == DLQ:
        origin = f"{v['topic']}:{v['partition']}:{v['offset']}"
        return f"dead-letter {v['reason']:18} stage={v['stage']} from {origin}"
    return None


def window_summary(aggregates: list[dict[str, Any]]) -> str:
    """One line per closed tumbling window: totals, and the restaurant doing worst."""
    first = aggregates[0]
    reviews = sum(a["reviews"] for a in aggregates)
    worst = min((a for a in aggregates if a["reviews"]), key=lambda a: a["sentiment_avg"], default=first)
    return (f"WINDOW     {_ts(first['window_start'])}-{_ts(first['window_end'])} closed: "
            f"{len(aggregates)} restaurants, {reviews} reviews, "
            f"{sum(a['orders_delivered'] for a in aggregates)} orders, "
            f"LLM ${sum(a['cost_micro_usd'] for a in aggregates) / 1e6:.6f}, "
            f"late {sum(a['late_events'] for a in aggregates)}, "
            f"max lag p95 {max(a['processing_lag']['p95_ms'] for a in aggregates)} ms; "
            f"worst {worst['restaurant_id']} avg {worst['sentiment_avg']:+.2f}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: every process is stopped


BROKER_NAMES = {"tansu": "Tansu, memory only", "kafka": "Apache Kafka, log dir in a temporary folder"}


def run_demo(*, rate: float, count: int, data_dir: Path, broker: str = "tansu") -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even started with `&` (bench.pipeline)
    started = time.monotonic()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"starting the broker ({BROKER_NAMES[broker]}), the schema registry and the LLM simulator ...",
          flush=True)
    stack = Stack(log_dir=log_dir, partitions=4, broker_kind=broker).start(llm_args=SIMULATOR_ARGS)
    try:
        assert stack.broker and stack.registry and stack.llm
        worker = stack.add_worker(data_dir=data_dir / "worker", extra_env=DEMO_ENV)
        worker.wait_ready()
        print(f"worker ready {time.monotonic() - started:.1f} s after start "
              f"(topics created, group joined, tables restored)", flush=True)
        print(f"""
  broker     {stack.broker.bootstrap}  ({BROKER_NAMES[broker]})
  registry   {stack.registry.url}/subjects
  LLM sim    {stack.llm.url}/v1  (50 ms, 2% errors, 1% 429s)
  dashboard  {worker.url}/
  metrics    {worker.url}/metrics
  logs       {log_dir}
""", flush=True)
        total = count or 10**9
        producer = threading.Thread(
            target=produce_sample, daemon=True,
            kwargs={"bootstrap_servers": stack.broker.bootstrap, "registry_url": stack.registry.url,
                    "count": total, "rate_per_s": rate},
        )
        producer.start()
        reader = TopicReader(stack.broker.bootstrap, registry_url=stack.registry.url)
        seen: Counter[str] = Counter()
        quiet_since = time.monotonic()
        # Partitions close a window at slightly different moments: a window's summary is
        # printed once its aggregates stopped arriving for WINDOW_SETTLE_S.
        windows: dict[Any, tuple[float, list[dict[str, Any]]]] = {}
        while True:
            records = reader.read_new(REVIEWS_ENRICHED, CRITICAL_ALERT, AGGREGATES, RESTAURANT_ALERTS, DLQ)
            for record in records:
                seen[record.topic] += 1
                if record.topic == AGGREGATES:
                    if record.value["window_kind"] == "TUMBLING":
                        start = record.value["window_start"]
                        aggregates = windows.get(start, (0.0, []))[1] + [record.value]
                        windows[start] = (time.monotonic(), aggregates)
                    continue
                # Every alert and dead letter; one critical review in 4, one enriched in 40.
                every = {REVIEWS_ENRICHED: 40, CRITICAL_ALERT: 4}.get(record.topic, 1)
                if seen[record.topic] % every == 1 or every == 1:
                    line = describe(record)
                    if line:
                        print(line, flush=True)
            for start, (last_seen, aggregates) in sorted(windows.items()):
                if time.monotonic() - last_seen >= WINDOW_SETTLE_S:
                    print(window_summary(aggregates), flush=True)
                    del windows[start]
            if records:
                quiet_since = time.monotonic()
            if count and not producer.is_alive() and time.monotonic() - quiet_since > 30:
                break
            time.sleep(1.0)
        print(f"\ndone: {dict(seen)}", flush=True)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        stack.stop()
