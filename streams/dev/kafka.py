"""Apache Kafka for development, tests and the bench: one KRaft node from its Maven jars.

The release tarball is not reachable from here, so the jars of one pinned version are
copied from Maven Central once, with the small POM beside this module
(``kafka-broker/pom.xml``), into a cache folder shared by every checkout. A broker is one
node in combined mode (broker and controller, a static quorum of itself) on free loopback
ports, with its log dir in a folder of the caller's; it is stopped by PID. Stopping and
starting it again on the same log dir is a broker restart (what the restart test does).

Nothing here is for production: users point REVIEWPULSE_KAFKA_BOOTSTRAP_SERVERS at their
own cluster. Unlike Tansu it has transactions, a real group coordinator, compaction and
durable logs, which is why the suite and the bench run on it.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from streams.dev.procs import StartupError, free_port, port_open, spawn, stop, wait_until

KAFKA_VERSION = "4.1.1"  # the version in kafka-broker/pom.xml
RESOURCES = Path(__file__).with_name("kafka-broker")
# A test broker holds a few hundred partitions and little data; 1 GiB leaves room for the
# worker, the registry and the simulator on a 24 GiB machine, and a fixed heap keeps GC
# pauses out of the latency figures.
JVM_HEAP = "-Xmx1g"
START_TIMEOUT_S = 60.0  # the JVM and KRaft start in 3-5 s here; a cold JIT on a busy machine takes longer

# One node's settings. Replication factors and ISR of 1 are what a single node allows;
# transactions need the last two. A group's first join waits group.initial.rebalance.delay.ms
# (3 s by default) for more members: a test group has all it will get at once.
SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
"""


def cache_dir() -> Path:
    """Where the jars are kept across checkouts (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "reviewpulse" / f"kafka-{KAFKA_VERSION}"


def kafka_jars() -> Path:
    """The folder of Kafka's runtime jars, copied from Maven Central on first use."""
    libs = cache_dir() / "libs"
    done = cache_dir() / ".complete"
    if done.exists():
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise StartupError("Apache Kafka needs Java 17+ and Maven: apt-get install openjdk-17-jre-headless "
                           "maven (make test installs them)")
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / ".lock").open("w") as lock:  # two test sessions may start at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(libs, ignore_errors=True)
            result = subprocess.run(
                ["mvn", "-q", "-B", "-f", str(RESOURCES / "pom.xml"), "dependency:copy-dependencies",
                 f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
                capture_output=True, text=True, timeout=600, check=False)
            if result.returncode != 0:
                raise StartupError(f"could not fetch Kafka {KAFKA_VERSION}'s jars with Maven:\n"
                                   f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
            done.touch()
    return libs


# A one-shot tool (the log dir's format) runs for a second: the client compiler alone and the
# serial collector start it in half the time (1.8 s -> 0.9 s here), once per broker a test starts.
# Never for the broker, whose throughput the bench measures.
TOOL_JVM_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def _java(*args: str, tool: bool = False) -> list[str]:
    return ["java", JVM_HEAP, *(TOOL_JVM_FLAGS if tool else ()), "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={RESOURCES / 'log4j2.properties'}",
            "-cp", f"{kafka_jars()}/*", *args]


@dataclass
class KafkaBroker:
    """A running single-node Kafka on 127.0.0.1; the same interface as the Tansu broker."""

    port: int
    controller_port: int
    home: Path  # server.properties and the log dir
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    remove_home: bool = False  # a temporary log dir goes with the broker
    host: str = field(default="127.0.0.1")
    kind: str = field(default="kafka")

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def run(self, *, timeout_s: float = START_TIMEOUT_S) -> KafkaBroker:
        """Start the JVM on the formatted log dir; return once it answers a metadata request."""
        self.proc = spawn(_java("kafka.Kafka", str(self.home / "server.properties")), log_path=self.log_path)
        try:
            wait_until(lambda: port_open(self.host, self.port), timeout_s=timeout_s,
                       what="Kafka broker port", proc=self.proc, log_path=self.log_path)
            wait_until(lambda: metadata_ok(self.bootstrap), timeout_s=timeout_s,
                       what="Kafka broker metadata", proc=self.proc, log_path=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, *, kill: bool = False) -> None:
        """Stop the broker (SIGTERM: a clean shutdown; ``kill``: SIGKILL) and start it again on
        the same log dir and ports: what a rolling restart does to one broker."""
        self._halt(kill=kill)
        self.run()

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker for good; a temporary log dir is removed with it."""
        self._halt(kill=kill)
        if self.remove_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _halt(self, *, kill: bool) -> None:
        # A clean shutdown of one node with a few hundred partitions takes 1-3 s here.
        if self.proc is not None:
            stop(self.proc, kill=kill, timeout_s=30.0)


def start_kafka(*, log_dir: Path, home: Path | None = None) -> KafkaBroker:
    """Format a fresh log dir in ``home`` (default: a temporary folder, removed by ``stop``)
    and start Kafka; its output goes to ``log_dir/kafka-<port>.log``."""
    port, controller_port = free_port(), free_port()
    temporary = home is None
    home = Path(tempfile.mkdtemp(prefix="reviewpulse-kafka-")) if home is None else home
    home.mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(port=port, controller_port=controller_port, home=home,
                         log_path=log_dir / f"kafka-{port}.log", remove_home=temporary)
    (home / "server.properties").write_text(SERVER_PROPERTIES.format(
        port=port, controller_port=controller_port, data_dir=broker.data_dir))
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    result = subprocess.run(
        # "--cluster-id=": an id may begin with "-", which argparse would take for an option
        _java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
              "--config", str(home / "server.properties"), tool=True),
        capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise StartupError(f"formatting Kafka's log dir failed:\n{result.stdout}{result.stderr}")
    return broker.run()


def metadata_ok(bootstrap: str) -> bool:
    """Whether a broker at ``bootstrap`` answers a metadata request naming at least one broker."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    return bool(admin.list_topics(timeout=2).brokers)
