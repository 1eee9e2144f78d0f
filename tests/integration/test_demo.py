"""`reviewpulse demo`, the README's first command, as a user runs it: the whole system comes up,
enriched reviews and a closed window are narrated, and Ctrl-C (SIGTERM) stops every process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from streams.dev.procs import port_open
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.embedded]


def test_demo_narrates_enriched_reviews_and_a_closed_window_then_stops_cleanly(
        broker_kind: str, tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--broker", broker_kind, "--rate", "40",
         "--data-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(demo.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        until(lambda: [x for x in lines if x.startswith("WINDOW")], timeout_s=150,
              what="a closed window narrated by the demo (output so far in the message)")
        assert any(x.startswith("enriched") for x in lines), lines[-30:]
        assert any(x.startswith("worker ready") for x in lines), lines[:20]
        assert any(broker_kind in x.lower() for x in lines if x.strip().startswith("broker")), lines[:20]
    finally:
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=60)
        reader.join(timeout=5)
        demo.stdout.close()
    assert code == 0, lines[-30:]
    assert any("stopping" in x for x in lines)
    # Every process the demo started is gone: the addresses it printed no longer answer.
    assert _printed_ports(lines), lines[:20]
    assert not [port for port in _printed_ports(lines) if port_open("127.0.0.1", port)]


def _printed_ports(lines: list[str]) -> list[int]:
    """The loopback ports of the broker, registry, simulator and dashboard the demo printed."""
    return [int(port) for line in lines for port in re.findall(r"127\.0\.0\.1:(\d+)", line)]
