"""The Kafka Streams peer (bench/peers/kafka-streams): build it once, run it, read its one JSON line.

The peer is a small Java program (Kafka Streams 4.1.1, Avro's GenericDatumReader on the
Confluent framing, the writer schema read from ``avro_schemas/ReviewCreated.avsc``): a
tumbling count per restaurant with ``suppress(untilWindowCloses)``. It stops once
``expected`` records reached the count (or at its timeout) and prints one JSON line;
:func:`run_peer` returns it as a :class:`PeerResult`. Building needs Maven and a JDK 17
(Maven Central the first time); running needs only ``java``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import avro_schemas
from streams.dev.procs import stop
from streams.errors import ReviewPulseError
from streams.topics import REVIEWS_CREATED

PEER_DIR = Path(__file__).resolve().parent / "peers" / "kafka-streams"
MAIN_CLASS = "com.reviewpulse.bench.kstreams.KStreamsPeer"
CLASSES = PEER_DIR / "target" / "classes"
DEPENDENCIES = PEER_DIR / "target" / "dependency"
BUILT_STAMP = PEER_DIR / "target" / "reviewpulse-built"  # touched after a successful build
# 1 GiB of heap: the counts and suppress buffer of 200 restaurants are KBs, RocksDB lives off
# heap; the cap keeps the JVM's default (a quarter of RAM) from looking like a leak beside Python.
JAVA_OPTS = ("-Xmx1g",)
# 900 s, the naive Faust app's table expiry (15 min), not the product's 10 s: a backlog
# re-keyed through a repartition topic reaches the count out of event-time order by as much
# as one input partition runs ahead of another (a smoke run at 10 s grace dropped 5,140 of
# 20,000 reviews as late), and at a gap between bench phases by the whole gap. With 900 s the
# peer counts every review the naive app counts, and no window closes (suppress emits
# nothing) in a run spanning under 15 minutes of event time; ``grace_s=10`` is the product's rule.
BENCH_GRACE_S = 900
# Streams' at-least-once default, what a throughput user keeps (the Java side says why).
COMMIT_INTERVAL_MS = 30_000
# The peer stops itself at its --timeout-s; this margin covers JVM start, group join and close.
EXIT_MARGIN_S = 90.0


class PeerError(ReviewPulseError):
    """The peer could not be built or run; the message names the missing tool or the log."""


@dataclass(frozen=True)
class PeerResult:
    """What the peer measured, between the first and the last record reaching its count."""

    events: int  # records that reached the count (after the repartition hop)
    expected: int
    timed_out: bool
    wall_s: float  # first -> last record
    events_per_s: float  # events / wall_s
    cpu_s: float  # process CPU over the same span (OperatingSystemMXBean.getProcessCpuTime)
    cpu_us_per_event: float
    steady_events_per_s: float | None  # 10% -> 90% of expected, as bench.pipeline rates a0 and d
    dropped_records: float | None  # Streams' dropped-records-total: late, expired or unreadable
    commits: float | None  # commits during the run (30 s interval: maybe none before the last record)
    log_path: Path
    raw: dict[str, Any] = field(repr=False)  # the whole JSON line (close time and CPU, totals, ...)

    @classmethod
    def from_line(cls, line: str, *, log_path: Path) -> PeerResult:
        data = json.loads(line)
        return cls(events=data["events"], expected=data["expected"], timed_out=data["timed_out"],
                   wall_s=_num(data["wall_s"]), events_per_s=_num(data["events_per_s"]),
                   cpu_s=_num(data["cpu_s"]), cpu_us_per_event=_num(data["cpu_us_per_event"]),
                   steady_events_per_s=data.get("steady_events_per_s"),
                   dropped_records=data.get("dropped_records"), commits=data.get("commits"),
                   log_path=log_path, raw=data)


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _tail(log_path: Path, lines: int = 5) -> str:
    text = log_path.read_text(errors="replace").splitlines()[-lines:] if log_path.exists() else []
    return "".join(f"\n  {line}" for line in text)


def _newest_source_mtime() -> float:
    files = [PEER_DIR / "pom.xml", *(PEER_DIR / "src").rglob("*")]
    return max(p.stat().st_mtime for p in files if p.is_file())


def _built_mtime() -> float | None:
    main = CLASSES / Path(*MAIN_CLASS.split(".")).with_suffix(".class")
    if not (BUILT_STAMP.exists() and main.exists() and any(DEPENDENCIES.glob("*.jar"))):
        return None
    return BUILT_STAMP.stat().st_mtime


def ensure_built(*, timeout_s: float = 600.0) -> Path:
    """Build the peer unless target/ is newer than its sources; return its directory.

    ``mvn package dependency:copy-dependencies``: classes in target/classes, every runtime
    jar in target/dependency, so a run needs no network. The first build downloads from
    Maven Central into ~/.m2; later builds are offline-capable.
    """
    built = _built_mtime()
    if built is not None and built >= _newest_source_mtime():
        return PEER_DIR
    missing = [tool for tool in ("mvn", "java") if shutil.which(tool) is None]
    if missing:
        raise PeerError(f"building the Kafka Streams peer needs {' and '.join(missing)} on PATH "
                        "(Maven 3.8+ and a JDK 17+); install them or skip the peer's phase")
    argv = ["mvn", "-q", "-B", "-f", str(PEER_DIR / "pom.xml"), "package", "dependency:copy-dependencies"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"{' '.join(argv)} took over {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise PeerError(f"{' '.join(argv)} failed with {done.returncode}:\n{tail}")
    BUILT_STAMP.touch()
    return PEER_DIR


def command(*, bootstrap: str, expected: int, application_id: str, input_topic: str, output_topic: str,
            window_size_s: int, grace_s: int, timeout_s: float, state_dir: Path, threads: int,
            commit_interval_ms: int) -> list[str]:
    """The java command line (run from any directory: every path is absolute)."""
    java = shutil.which("java")
    if java is None:
        raise PeerError("running the Kafka Streams peer needs java (a JDK or JRE 17+) on PATH")
    return [java, *JAVA_OPTS, "-cp", f"{CLASSES}:{DEPENDENCIES}/*", MAIN_CLASS,
            "--bootstrap", bootstrap, "--application-id", application_id,
            "--input-topic", input_topic, "--output-topic", output_topic,
            "--schema", str(avro_schemas.schema_path("ReviewCreated")),
            "--window-size-s", str(window_size_s), "--grace-s", str(grace_s),
            "--expected", str(expected), "--timeout-s", str(int(timeout_s)),
            "--state-dir", str(state_dir), "--threads", str(threads),
            "--commit-interval-ms", str(commit_interval_ms)]


@dataclass
class PeerProcess:
    """A started peer: its PID is ``proc.pid`` (for a CPU meter); :meth:`wait` reads its result."""

    proc: subprocess.Popen[str]
    log_path: Path
    timeout_s: float
    output_topic: str

    def wait(self) -> PeerResult:
        """The peer's JSON line once it exits; stops it (by PID) if it overruns or this is interrupted."""
        try:
            stdout, _ = self.proc.communicate(timeout=self.timeout_s + EXIT_MARGIN_S)
        except BaseException as exc:  # timeout, Ctrl-C, SIGTERM: never leave the JVM behind
            stop(self.proc)  # type: ignore[arg-type]
            if isinstance(exc, subprocess.TimeoutExpired):
                raise PeerError(f"the Kafka Streams peer did not exit in time; log: {self.log_path}") from exc
            raise
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise PeerError(f"the Kafka Streams peer exited with {self.proc.returncode} and printed no "
                            f"result; log: {self.log_path}{_tail(self.log_path)}")
        result = PeerResult.from_line(lines[-1], log_path=self.log_path)
        if self.proc.returncode != 0:
            raise PeerError(f"the Kafka Streams peer failed ({result.raw.get('error')}); "
                            f"log: {self.log_path}")
        return result


def start_peer(*, bootstrap: str, expected: int, log_dir: Path, input_topic: str = REVIEWS_CREATED,
               application_id: str | None = None, output_topic: str | None = None,
               window_size_s: int = 60, grace_s: int = BENCH_GRACE_S, timeout_s: float = 600.0,
               threads: int = 1, commit_interval_ms: int = COMMIT_INTERVAL_MS) -> PeerProcess:
    """Build if needed, then start the peer; its log (stderr) and state go under ``log_dir``.

    The application id is new for every call unless given, so the peer reads ``input_topic``
    from its start (``auto.offset.reset=earliest``) with no committed offsets or state.
    """
    ensure_built()
    app_id = application_id or f"reviewpulse-bench-kstreams-{uuid.uuid4().hex[:8]}"
    output = output_topic or f"{app_id}-counts"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "kstreams-peer.log"
    argv = command(bootstrap=bootstrap, expected=expected, application_id=app_id, input_topic=input_topic,
                   output_topic=output, window_size_s=window_size_s, grace_s=grace_s, timeout_s=timeout_s,
                   state_dir=log_dir / "kstreams-state", threads=threads,
                   commit_interval_ms=commit_interval_ms)
    with log_path.open("a") as log:  # the child keeps its own descriptor
        log.write(f"# {time.strftime('%H:%M:%S')} {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                text=True, start_new_session=True)
    return PeerProcess(proc=proc, log_path=log_path, timeout_s=timeout_s, output_topic=output)


def run_peer(*, bootstrap: str, expected: int, log_dir: Path, input_topic: str = REVIEWS_CREATED,
             window_size_s: int = 60, grace_s: int = BENCH_GRACE_S, timeout_s: float = 600.0,
             threads: int = 1, commit_interval_ms: int = COMMIT_INTERVAL_MS) -> PeerResult:
    """Run the peer over ``expected`` records of ``input_topic`` and return what it measured."""
    return start_peer(bootstrap=bootstrap, expected=expected, log_dir=log_dir, input_topic=input_topic,
                      window_size_s=window_size_s, grace_s=grace_s, timeout_s=timeout_s,
                      threads=threads, commit_interval_ms=commit_interval_ms).wait()
