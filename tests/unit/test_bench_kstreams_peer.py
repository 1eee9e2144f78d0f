"""The Kafka Streams peer's Python side (bench/kstreams_peer.py), without Maven, Java or a broker.

The peer itself is checked by ``python -m bench.kstreams_smoke`` against a real Kafka.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import avro_schemas
from bench import kstreams_peer
from bench.kstreams_peer import PeerError, PeerResult


def test_a_build_without_maven_or_java_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kstreams_peer, "_built_mtime", lambda: None)
    monkeypatch.setattr(kstreams_peer.shutil, "which", lambda tool: None)
    with pytest.raises(PeerError, match="mvn and java"):
        kstreams_peer.ensure_built()


def test_the_peer_reads_the_committed_schema_and_needs_no_network_jar(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kstreams_peer.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    argv = kstreams_peer.command(bootstrap="127.0.0.1:9092", expected=10, application_id="app",
                                 input_topic="reviews.created", output_topic="out", window_size_s=60,
                                 grace_s=10, timeout_s=30, state_dir=tmp_path, threads=1,
                                 commit_interval_ms=30_000)
    assert argv[argv.index("--schema") + 1] == str(avro_schemas.schema_path("ReviewCreated"))
    assert argv[argv.index("-cp") + 1] == f"{kstreams_peer.CLASSES}:{kstreams_peer.DEPENDENCIES}/*"


def test_the_json_line_becomes_a_result_and_null_figures_become_nan(tmp_path: Path) -> None:
    line = json.dumps({"peer": "kafka-streams", "events": 3, "expected": 5, "timed_out": True,
                       "wall_s": None, "events_per_s": None, "cpu_s": 0.5, "cpu_us_per_event": 1.0,
                       "steady_events_per_s": None, "dropped_records": 0.0, "commits": 0.0})
    result = PeerResult.from_line(line, log_path=tmp_path / "log")
    assert (result.events, result.expected, result.timed_out) == (3, 5, True)
    assert math.isnan(result.events_per_s) and result.steady_events_per_s is None
    assert result.raw["peer"] == "kafka-streams"
