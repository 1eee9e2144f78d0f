"""The embedded system on one machine: a broker, the registry, the LLM simulator, workers.

One piece for the demo, the integration tests and the benchmarks. Every process is
started on a free 127.0.0.1 port, waited for by polling (never a fixed sleep), and
stopped by PID in reverse order. The broker is Tansu (the demo's default: nothing but
Python) or Apache Kafka (the suite and the bench). Nothing here is for production: the
registry and the simulator are ours.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from streams.dev.broker import AnyBroker, start_broker
from streams.dev.procs import free_port, spawn, stop, wait_until
from streams.topics import ORDERS_DELIVERED, REVIEWS_CREATED

# One process per part on one machine: no GC pause or network blip to ride out, so a short
# session timeout costs nothing here. On Tansu it cuts the first join from ~30 s to ~3 s; on
# both brokers it is how soon a killed worker's partitions move to the survivor.
# Production keeps Settings' 60 s. The heartbeat must stay under a third of it.
EMBEDDED_SESSION_TIMEOUT_S = 6
EMBEDDED_HEARTBEAT_INTERVAL_S = 1


def create_topics(bootstrap: str, names: Iterable[str], *, partitions: int) -> None:
    """Create topics (the inputs other services own); existing ones are left alone."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(n, num_partitions=partitions, replication_factor=1)
           for n in names if n not in existing]
    for name, future in admin.create_topics(new).items() if new else ():
        try:
            future.result(15)
        except Exception as exc:  # already exists (a race with auto-creation) is fine
            if "already exists" not in str(exc).lower():
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1.0).status_code == 200


def cli(*args: str) -> list[str]:
    """argv running our console script with this interpreter (works without PATH)."""
    return [sys.executable, "-m", "streams.cli", *args]


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, *, kill: bool = False) -> None:
        stop(self.proc, kill=kill)

    def wait_ready(self, *, timeout_s: float = 60.0) -> float:
        """Poll ``/ready`` until 200 (topics exist, group joined, tables restored); seconds waited."""
        started = time.monotonic()
        wait_until(lambda: _http_ok(f"{self.url}/ready"), timeout_s=timeout_s,
                   what=f"{self.name} /ready", proc=self.proc, log_path=self.log_path)
        return time.monotonic() - started


@contextlib.contextmanager
def _stopped_on_failure(process: Process) -> Iterator[None]:
    """A process that never became ready (or whose wait was interrupted) is not left behind."""
    try:
        yield
    except BaseException:
        process.stop()
        raise


def start_registry(broker: AnyBroker, *, log_dir: Path, port: int | None = None) -> Process:
    port = port or free_port()
    log_path = log_dir / f"registry-{port}.log"
    proc = spawn(cli("registry", "--port", str(port), "--bootstrap-servers", broker.bootstrap),
                 log_path=log_path)
    process = Process("registry", proc, log_path, port)
    with _stopped_on_failure(process):
        wait_until(lambda: _http_ok(f"{process.url}/subjects"), timeout_s=60,
                   what="schema registry", proc=proc, log_path=log_path)
    return process


def start_llm_sim(*, log_dir: Path, port: int | None = None, args: Iterable[str] = ()) -> Process:
    port = port or free_port()
    log_path = log_dir / f"llm-sim-{port}.log"
    proc = spawn(cli("llm-sim", "--port", str(port), *args), log_path=log_path)
    process = Process("llm-sim", proc, log_path, port)
    with _stopped_on_failure(process):
        wait_until(lambda: _http_ok(f"{process.url}/health"), timeout_s=30,
                   what="LLM simulator", proc=proc, log_path=log_path)
    return process


def worker_env(
    *, broker: AnyBroker, registry: Process, llm: Process | None, data_dir: Path, web_port: int,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = {
        "REVIEWPULSE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "REVIEWPULSE_SCHEMA_REGISTRY_URL": registry.url,
        "REVIEWPULSE_DATA_DIR": str(data_dir),
        "REVIEWPULSE_WEB_PORT": str(web_port),
        # A first group join on Tansu takes about half the session timeout (DESIGN §11): the
        # embedded stack uses a short one so a worker answers /ready within 10 s of start.
        "REVIEWPULSE_BROKER_SESSION_TIMEOUT_S": str(EMBEDDED_SESSION_TIMEOUT_S),
        "REVIEWPULSE_BROKER_HEARTBEAT_INTERVAL_S": str(EMBEDDED_HEARTBEAT_INTERVAL_S),
        "REVIEWPULSE_BROKER_FLAVOR": broker.kind,
    }
    if llm is not None:
        env["REVIEWPULSE_LLM_BASE_URL"] = f"{llm.url}/v1"
    env.update(extra or {})
    return env


def start_worker(env: dict[str, str], *, log_dir: Path, name: str = "worker") -> Process:
    port = int(env["REVIEWPULSE_WEB_PORT"])
    log_path = log_dir / f"{name}-{port}.log"
    proc = spawn(cli("worker"), log_path=log_path, env=env)
    process = Process(name, proc, log_path, port)
    with _stopped_on_failure(process):
        wait_until(lambda: _http_ok(f"{process.url}/health"), timeout_s=90,
                   what=name, proc=proc, log_path=log_path)
    return process


@dataclass
class Stack:
    """Broker, registry and simulator (workers are started separately, as tests need).

    ``broker_kind`` is ``"tansu"`` (the demo's default) or ``"kafka"``.
    """

    log_dir: Path
    partitions: int = 4
    broker_kind: str = "tansu"
    broker: AnyBroker | None = None
    registry: Process | None = None
    llm: Process | None = None
    workers: list[Process] = field(default_factory=list)

    def start(self, *, llm_args: Iterable[str] = (), create_inputs: bool = True) -> Stack:
        """``create_inputs=False`` leaves the input topics to the worker (streams.admin)."""
        try:
            self.broker = start_broker(self.broker_kind, log_dir=self.log_dir)
            if create_inputs:
                create_topics(self.broker.bootstrap, [REVIEWS_CREATED, ORDERS_DELIVERED],
                              partitions=self.partitions)
            self.registry = start_registry(self.broker, log_dir=self.log_dir)
            self.llm = start_llm_sim(log_dir=self.log_dir, args=llm_args)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, *, data_dir: Path, extra_env: dict[str, str] | None = None,
                   name: str = "worker") -> Process:
        assert self.broker and self.registry
        env = worker_env(broker=self.broker, registry=self.registry, llm=self.llm,
                         data_dir=data_dir, web_port=free_port(),
                         extra={"REVIEWPULSE_TOPIC_PARTITIONS": str(self.partitions),
                                **(extra_env or {})})
        worker = start_worker(env, log_dir=self.log_dir, name=name)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for process in reversed(self.workers):
            process.stop()
        self.workers.clear()
        for process in (self.llm, self.registry, self.broker):
            if process is not None:
                process.stop()
