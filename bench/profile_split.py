"""Where the worker's time goes, by component: a py-spy profile split leaf first.

    .venv/bin/python -m bench.pipeline --events-0ms 20000 --steady-s 10 --phases a0 --profile 12
    .venv/bin/python -m bench.profile_split artifacts/bench/<time>/a0.pyspy.txt [--us-per-event 379]

Each sample goes to the component of its innermost frame that names one (so the JSON
parsing the LLM answer counts as the LLM request, the producer's futures as the producer);
samples of Faust's consumer thread are shown apart (py-spy counts its ``epoll`` wait as
busy). With ``--us-per-event`` (the bench's "worker CPU per event") each share is also
given in µs per event. The patterns are rough by design: they say which parts are large,
not to the percent.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

COMPONENTS = [  # first match, leaf first
    ("metrics (prometheus-client)", r"prometheus_client/"),
    ("logging", r"/logging/|streams/logs\.py"),
    ("Avro encode/decode", r"fastavro|schema_registry/serde|schema_registry/codec|streams/codecs"),
    ("producer (aiokafka send path)", r"aiokafka/producer|aiokafka/record"),
    ("consume path (aiokafka fetch, Faust consumer, stream, conductor)",
     r"aiokafka/consumer|faust/streams\.py|faust/transport/conductor|faust/transport/consumer|"
     r"faust/channels|faust/transport/drivers/aiokafka|faust/events|handled_batches|without_superseded"),
    ("LLM HTTP client (aiohttp)", r"aiohttp/|yarl/|multidict"),
    ("LLM request: prompt, parse, redact, cache, budget", r"agents/llm/|agents/enrich\.py"),
    ("tables (RocksDB, JSON codec)",
     r"streams/faust/|rocksdict|faust/stores|faust/tables|faust/utils/json"),
    ("stage core: dedupe, fold, join, close",
     r"agents/stage/|agents/enrichment\.py|tables/|streams/protocol\.py"),
    ("decode + validate", r"agents/decode\.py|streams/validation\.py|agents/settle\.py"),
    ("Kafka client I/O (aiokafka connections)", r"aiokafka/"),
    ("asyncio: loop, tasks, futures", r"asyncio/|selectors\.py|mode/"),
]
CONSUMER_THREAD = "(Faust's consumer thread)"


def split(lines: list[str]) -> Counter[str]:
    """Samples per component, from py-spy's raw output (``frame;frame;... count`` a line)."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if any("Thread._bootstrap" in frame for frame in frames[:3]):
            counts[CONSUMER_THREAD] += int(count)
            continue
        counts[next((name for frame in reversed(frames) for name, pattern in COMPONENTS
                     if re.search(pattern, frame)), "other")] += int(count)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path, help="py-spy raw output (the bench's <phase>.pyspy.txt)")
    parser.add_argument("--us-per-event", type=float, help="the bench's worker CPU per event, to print µs")
    args = parser.parse_args()
    counts = split(args.profile.read_text().splitlines())
    total = sum(counts.values())
    for name, count in counts.most_common():
        share = count / total
        us = "" if args.us_per_event is None else f"{share * args.us_per_event:6.0f} µs  "
        print(f"{100 * share:5.1f}%  {us}{name}")
    print(f"{total} samples")


if __name__ == "__main__":
    main()
