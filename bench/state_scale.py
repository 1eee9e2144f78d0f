"""State at scale (issue 12): 100,000 distinct restaurants through the stage core, no broker.

Run: ``.venv/bin/python -m bench.state_scale`` (``--help`` for sizes). It drives
:class:`agents.stage.StageCore` directly, as the unit tests do (``tests/unit/agents/conftest.py``):
tables are plain dicts, the senders are fakes that acknowledge at once, the LLM is a fake
that answers at once. Events are built with ``streams.protocol.write_item`` /
``write_tick`` as decode and the tick agent would put them on the by-restaurant topic.

What it does, with product window settings (60 s tumbling, 15 min hopping every 1 min,
10 s grace) unless told otherwise:

1. load: one review per restaurant (``--restaurants``, default 100,000) in batches of
   ``take_max_events`` (1,000), spread over ``--partitions``; each batch is processed,
   then its enrichment answers are joined (the fake LLM answers at once);
2. ticks, one per partition each, at watermarks chosen to show each kind of tick:
   nothing due yet (twice: the first tick also writes every closure record); the
   tumbling window and the first hopping window close; nothing due after that close.
   ``--collect`` adds a tick past every window (the panes are collected; with product
   windows each restaurant closes its 13 remaining hopping windows at once: slow, and
   GBs at 100k; ``--hopping-size-s 120`` makes it cheap) and one with nothing open.

For every tick it prints the time (ms) for all partitions, how many restaurants the
tick walked (``PartitionState.close`` calls) and how many windows it closed (aggregates
sent); for the load, the time per batch (process, then the joins). Memory: peak RSS
(``getrusage``), the bytes the tables would store as JSON (a sample of entries, scaled)
and the table sizes after each step; with ``--tracemalloc`` the load again
under ``tracemalloc`` (allocated after the load, peak; about 4x slower, so not by
default). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.llm.labels import Enrichment
from agents.llm.outcome import EnrichOutcome, EnrichStatus
from agents.outbox import Outbox
from agents.stage import Job, OutputTopics, Ports, StageCore
from streams.protocol import REVIEW, Item, Origin, Tick, write_item, write_tick
from streams.settings import Settings, load_settings
from tables import panes as panes_module
from tables.state import PartitionTables

BASE_MS = 1_700_000_040_000  # a multiple of 60 s: the first pane starts here
BY_RESTAURANT = "reviewpulse-by-restaurant"
TOPICS = OutputTopics(enriched="reviews.enriched", critical_alert="reviews.critical_alert",
                      aggregates="restaurants.aggregates", restaurant_alerts="restaurants.alerts",
                      retry="reviews.retry")
TEXTS = ("Great food, delicious and hot. Loved it!", "Cold and late, the worst delivery ever.",
         "It was fine, nothing special.")


class CountingDict(dict):
    """A plain dict table that counts writes and deletes (each would be a changelog record)."""

    writes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        CountingDict.writes += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        CountingDict.writes += 1
        super().__delitem__(key)


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(eq=False)  # the core tells events apart by id()
class Event:
    message: Message


@dataclass(frozen=True)
class Delivery:
    topic: str
    partition: int
    offset: int


class World:
    """The ports: dict tables per partition, senders that count, a settable clock."""

    def __init__(self) -> None:
        self.tables: dict[int, PartitionTables] = {}
        self.now_ms = BASE_MS
        self.sent: dict[str, int] = {}
        self.sent_bytes = 0
        self.acked = 0
        self.dead_letters = 0
        self._offsets: dict[tuple[str, int], int] = {}

    def _delivered(self, topic: str, partition: int | None) -> asyncio.Future[Delivery]:
        where = (topic, partition or 0)
        offset = self._offsets.get(where, 0)
        self._offsets[where] = offset + 1
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        future.set_result(Delivery(topic, where[1], offset))
        return future

    async def send(self, topic: str, *, key: bytes, value: bytes, partition: int | None = None,
                   headers: Any = None, stage_partition: int | None = None) -> asyncio.Future[Delivery]:
        self.sent[topic] = self.sent.get(topic, 0) + 1
        self.sent_bytes += len(value)
        return self._delivered(topic, partition)

    async def dead_letter(self, origin: Origin, **details: Any) -> asyncio.Future[Delivery]:
        self.dead_letters += 1
        return self._delivered("dlq", None)

    @staticmethod
    def encode(record_name: str, record: dict[str, Any]) -> bytes:
        return json.dumps(record, separators=(",", ":")).encode()

    async def ack(self, event: Any) -> None:
        self.acked += 1

    async def flush_producer(self) -> None:
        return None

    def tables_for(self, partition: int, event: Any) -> PartitionTables:
        tables = self.tables.get(partition)
        if tables is None:
            tables = self.tables[partition] = PartitionTables(
                dedupe=CountingDict(), panes=CountingDict(), closures=CountingDict(),
                daily_cost=CountingDict(), latest=CountingDict(), review_states=CountingDict())
        return tables

    def ports(self) -> Ports:
        return Ports(tables_for=self.tables_for, send=self.send, dead_letter=self.dead_letter,
                     encode=self.encode, flush_producer=self.flush_producer,
                     clock_ms=lambda: self.now_ms)

    def sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for tables in self.tables.values():
            for name in ("dedupe", "panes", "closures", "daily_cost", "latest", "review_states"):
                out[name] = out.get(name, 0) + len(getattr(tables, name))
        return out


async def instant_llm(jobs: Sequence[Job], spent: dict[str, int]) -> list[EnrichOutcome]:
    """An LLM that answers every review at once: NEGATIVE, one category, 100 + 20 tokens."""
    return [EnrichOutcome(ref=job.item.event_id, restaurant_id=job.item.restaurant_id,
                          status=EnrichStatus.ENRICHED,
                          enrichment=Enrichment(label="NEGATIVE", score=-0.6, categories=("delivery_time",),
                                                reply_draft="We are sorry."),
                          model="bench-llm", prompt_version="bench-v1", tokens_in=100, tokens_out=20,
                          cost_micro_usd=30, latency_ms=1.0, text=job.item.record["entity"]["text"])
            for job in jobs]


class Feed:
    """By-restaurant events at the next offset of their partition."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.next_offset = [0] * partitions
        self.input_offset = 0

    def _event(self, partition: int, key: bytes, value: bytes) -> Event:
        offset = self.next_offset[partition]
        self.next_offset[partition] += 1
        return Event(Message(BY_RESTAURANT, partition, offset, key, value, (("trace_id", b"t"),)))

    def review(self, n: int, *, occurred_ms: int) -> Event:
        restaurant = f"rest-{n:06d}"
        event_id = f"ev-{n:07d}"
        record = {
            "event_id": event_id, "event_version": 1, "occurred_at": occurred_ms,
            "entity": {"review_id": f"rv-{n}", "order_id": f"ord-{n}", "user_id": f"usr-{n % 5000}",
                       "restaurant_id": restaurant, "rating": 1 + n % 5, "text": TEXTS[n % len(TEXTS)],
                       "language": "en"},
            "metadata": {"source": "bench", "trace_id": f"trc-{n}", "retries": 0},
        }
        self.input_offset += 1
        origin = Origin(topic="reviews.created", partition=n % self.partitions, offset=self.input_offset,
                        key=event_id.encode(), value=b"\x00\x00\x00\x00\x01avro",
                        headers=(("trace_id", f"trc-{n}".encode()),))
        value = write_item(Item(kind=REVIEW, record=record, origin=origin))
        return self._event(n % self.partitions, restaurant.encode(), value)

    def tick(self, partition: int, watermark_ms: int) -> Event:
        return self._event(partition, b"~tick", write_tick(
            Tick(sender="bench-worker", sent_at_ms=watermark_ms,
                 marks={f"reviews.created:{p}": watermark_ms for p in range(self.partitions)},
                 partitions={"reviews.created": self.partitions})))


class CloseCounter:
    """Counts ``PartitionState.close`` calls: the restaurants a batch or tick walked."""

    def __init__(self) -> None:
        self.calls = 0
        self.available = hasattr(panes_module.PartitionState, "close")
        self._original = getattr(panes_module.PartitionState, "close", None)

    def __enter__(self) -> CloseCounter:
        if self.available:
            original = self._original
            counter = self

            def close(state: Any, *args: Any, **kwargs: Any) -> Any:
                counter.calls += 1
                return original(state, *args, **kwargs)  # type: ignore[misc]

            panes_module.PartitionState.close = close  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.available:
            panes_module.PartitionState.close = self._original  # type: ignore[method-assign]


def table_bytes(world: World, *, sample: int = 2_000) -> dict[str, float]:
    """Bytes each table would store as JSON (key + value: what RocksDB and the changelog
    hold). Per-partition entries (keys starting ``~``, e.g. the closures' index of
    restaurants) are measured exactly; of the others every ``len/sample``-th entry,
    scaled to all of them."""
    out: dict[str, float] = {}
    for tables in world.tables.values():
        for name in ("dedupe", "panes", "closures", "daily_cost", "latest", "review_states"):
            table = getattr(tables, name)
            special = [(k, v) for k, v in table.items() if str(k).startswith("~")]
            keys = [k for k in table if not str(k).startswith("~")]
            picked = keys[:: max(1, len(keys) // sample)]
            exact = sum(len(str(k)) + len(json.dumps(v, separators=(",", ":"))) for k, v in special)
            per_entry = (sum(len(str(k)) + len(json.dumps(table[k], separators=(",", ":"))) for k in picked)
                         / len(picked)) if picked else 0
            out[name] = out.get(name, 0) + exact + per_entry * len(keys)
    return out


def fmt_mb(sizes: dict[str, float]) -> str:
    total = sum(sizes.values()) / 2**20
    return ", ".join(f"{k} {v / 2**20:,.1f}" for k, v in sizes.items()) + f" (total {total:,.1f}) MB"


def rss_mb() -> float:
    """Peak resident set size of this process so far (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def drain(core: StageCore, world: World, expected_acks: int, *, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while world.acked < expected_acks:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {world.acked} of {expected_acks} events acked")
        await asyncio.sleep(0)


async def scenario(args: argparse.Namespace, settings: Settings, *, report: bool,
                   load_only: bool = False) -> dict[str, Any]:
    world = World()
    outbox_topics = [TOPICS.aggregates, TOPICS.restaurant_alerts]

    async def scan(partition: int, starts: Any) -> tuple[set[str], dict[str, int]]:
        return set(), {}

    core = StageCore(ports=world.ports(), topics=TOPICS, settings=settings,
                     outbox=Outbox(outbox_topics, scan=scan), enrich=instant_llm)
    core.start()
    feed = Feed(args.partitions)
    out: dict[str, Any] = {}
    counter = CloseCounter()
    try:
        # --- load ------------------------------------------------------------------------------
        world.now_ms = BASE_MS + 30_000
        n, size = args.restaurants, args.batch
        process_ms, join_ms, walked = [], [], 0
        started = time.perf_counter()
        with counter:
            for first in range(0, n, size):
                events = [feed.review(i, occurred_ms=BASE_MS + (i * 7) % 50_000)
                          for i in range(first, min(n, first + size))]
                t0 = time.perf_counter()
                await core.process(events, world.ack)
                t1 = time.perf_counter()
                await drain(core, world, first + len(events))
                process_ms.append((t1 - t0) * 1000)
                join_ms.append((time.perf_counter() - t1) * 1000)
                del events
        walked = counter.calls
        load_s = time.perf_counter() - started
        gc.collect()
        out["load"] = {"events": n, "batches": len(process_ms), "batch_size": size, "seconds": load_s,
                       "process_ms_mean": statistics.fmean(process_ms),
                       "process_ms_p99": sorted(process_ms)[int(len(process_ms) * 0.99) - 1],
                       "join_ms_mean": statistics.fmean(join_ms), "walked": walked,
                       "writes": CountingDict.writes, "sizes": world.sizes(),
                       "rss_peak_mb": rss_mb(), "table_bytes": table_bytes(world)}
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            out["load"]["traced_mb"], out["load"]["traced_peak_mb"] = current / 2**20, peak / 2**20
        if report:
            lo = out["load"]
            print(f"load: {n:,} reviews of {n:,} restaurants in {lo['batches']} batches of {size} over "
                  f"{args.partitions} partitions: {load_s:.1f} s ({n / load_s:,.0f} ev/s)")
            print(f"   per batch: process {lo['process_ms_mean']:.1f} ms mean "
                  f"(p99 {lo['process_ms_p99']:.1f}), joins {lo['join_ms_mean']:.1f} ms mean; "
                  f"restaurants walked by the batches {walked:,}; table writes {lo['writes']:,}")
            print(f"   tables: {fmt_sizes(lo['sizes'])}; peak RSS {lo['rss_peak_mb']:,.0f} MB")
            total = sum(lo["table_bytes"].values())
            print(f"   the tables as JSON (what RocksDB and the changelogs hold): "
                  f"{fmt_mb(lo['table_bytes'])}, "
                  f"{total / n:,.0f} B per restaurant")

        # --- ticks ------------------------------------------------------------------------------
        window, grace = settings.window_size_s * 1000, settings.window_grace_s * 1000
        hopping, step = settings.hopping_size_s * 1000, settings.hopping_step_s * 1000
        ticks = [
            ("nothing due, first tick", BASE_MS + 50_000),
            ("nothing due, again", BASE_MS + 55_000),
            ("tumbling + first hopping close", BASE_MS + window + grace),
            ("nothing due after the close", BASE_MS + window + grace + 5_000),
        ]
        if args.collect:  # every remaining hopping window of every restaurant closes at once
            ticks += [("past every window (panes collected)", BASE_MS + hopping + grace + step),
                      ("after that (nothing open)", BASE_MS + hopping + grace + 2 * step)]
        out["ticks"] = []
        for name, watermark in ticks if not load_only else ():
            world.now_ms = watermark + 500
            counter.calls = 0
            writes0, sent0 = CountingDict.writes, world.sent.get(TOPICS.aggregates, 0)
            alerts0 = world.sent.get(TOPICS.restaurant_alerts, 0)
            events = [feed.tick(p, watermark) for p in range(args.partitions)]
            acked = world.acked
            with counter:
                t0 = time.perf_counter()
                await core.process(events, world.ack)
                elapsed_ms = (time.perf_counter() - t0) * 1000
            await drain(core, world, acked + len(events))
            gc.collect()
            row = {"tick": name, "watermark_offset_s": (watermark - BASE_MS) / 1000, "ms": elapsed_ms,
                   "walked": counter.calls if counter.available else None,
                   "aggregates": world.sent.get(TOPICS.aggregates, 0) - sent0,
                   "alerts": world.sent.get(TOPICS.restaurant_alerts, 0) - alerts0,
                   "writes": CountingDict.writes - writes0, "sizes": world.sizes(), "rss_peak_mb": rss_mb()}
            out["ticks"].append(row)
            if report:
                walked_s = f"{row['walked']:,}" if row["walked"] is not None else "n/a"
                print(f"tick @ +{row['watermark_offset_s']:.0f} s ({name}): {elapsed_ms:,.1f} ms; "
                      f"restaurants walked {walked_s}; aggregates {row['aggregates']:,}, alerts "
                      f"{row['alerts']:,}; table writes {row['writes']:,}")
                print(f"   tables: {fmt_sizes(row['sizes'])}")
        if report:
            end = table_bytes(world)
            out["table_bytes_end"] = end
            print(f"   the tables as JSON after the ticks: {fmt_mb(end)}")
        out["sent"] = dict(world.sent)
        out["dead_letters"] = world.dead_letters
    finally:
        await core.stop()
    return out


def fmt_sizes(sizes: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sizes.items())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.state_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--restaurants", type=int, default=100_000, help="distinct restaurant ids")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=Settings().take_max_events,
                        help="events per stage batch (take_max_events)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="a second pass: the load again under tracemalloc (about 4x slower)")
    parser.add_argument("--collect", action="store_true",
                        help="two more ticks: past every window (all remaining hopping windows close "
                             "at once, 13 per restaurant with product windows: slow and GBs at 100k), "
                             "then one with nothing open")
    parser.add_argument("--hopping-size-s", type=int, default=None,
                        help="override the hopping window size (e.g. 120 makes --collect cheap)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {} if args.hopping_size_s is None else {"hopping_size_s": args.hopping_size_s}
    settings = load_settings(**overrides)
    CountingDict.writes = 0
    print(f"state scale: windows {settings.window_size_s} s tumbling, {settings.hopping_size_s} s hopping "
          f"every {settings.hopping_step_s} s, grace {settings.window_grace_s} s; "
          f"LLM batch {settings.llm_batch_size} x {settings.llm_concurrency} (answers at once)")
    rss_before = rss_mb()
    results: dict[str, Any] = {"rss_start_mb": rss_before}
    started = time.perf_counter()
    results["clean"] = asyncio.run(scenario(args, settings, report=True))
    clean_s = time.perf_counter() - started
    print(f"peak RSS {rss_mb():,.0f} MB (at start {rss_before:,.0f} MB; after the load "
          f"{results['clean']['load']['rss_peak_mb']:,.0f} MB); clean pass {clean_s:.1f} s")
    if args.tracemalloc:
        gc.collect()
        CountingDict.writes = 0
        tracemalloc.start()
        t0 = time.perf_counter()
        traced = asyncio.run(scenario(args, settings, report=False, load_only=True))
        tracemalloc.stop()
        results["traced"] = traced
        load = traced["load"]
        print(f"tracemalloc pass (the load again, {time.perf_counter() - t0:.1f} s, times not used): "
              f"allocated after the load {load['traced_mb']:,.1f} MB "
              f"({load['traced_mb'] * 2**20 / args.restaurants:,.0f} B per restaurant: the five tables, "
              f"the core's caches), peak during the load {load['traced_peak_mb']:,.1f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
    sys.exit(0)
