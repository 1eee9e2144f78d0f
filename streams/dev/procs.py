"""Start, wait for and stop local helper processes: free ports, readiness polls, stop by PID.

Shared by the demo, the tests and the benchmarks so none of them sleeps for luck.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class StartupError(RuntimeError):
    """A helper process did not become ready in time; the message names it and its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free now (tiny race window; fine for local processes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> object:
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what`` and the log tail."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StartupError(f"{what}: process exited with {proc.returncode}{_tail(log_path)}")
        try:
            last = predicate()
        except Exception as exc:  # a probe that raises means "not yet"
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval_s)
    raise StartupError(f"{what}: not ready after {timeout_s:.0f} s (last: {last!r}){_tail(log_path)}")


def _tail(log_path: Path | None, lines: int = 20) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log_path} ---\n" + "\n".join(text)


def spawn(argv: list[str], *, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a process in its own session, output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], *, timeout_s: float = 10.0, kill: bool = False) -> None:
    """Stop one process we started, by PID: SIGTERM (or SIGKILL), then SIGKILL after a timeout."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
