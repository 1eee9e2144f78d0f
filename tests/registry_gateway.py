"""A real registry behind a gateway that fails on cue, as a rate limiter or an auth proxy would.

In production a 429 or a 401 usually comes from what stands in front of the registry (a
cloud registry's rate limit, an API gateway, a credentials proxy), not from the registry
itself, so the tests put one there: :class:`RegistryGateway` forwards every request to
the registry unchanged until :meth:`RegistryGateway.fail` gives it phases of answers
(``429`` with ``Retry-After`` for 10 s, then ``401`` for 10 s...). It is a plain threaded
HTTP server on a free 127.0.0.1 port, so a worker subprocess and an in-process async
client reach it alike, and it records every answer it gave for the test to assert on.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

# Hop-by-hop or recomputed headers: the gateway's own connection decides them.
_NOT_FORWARDED = frozenset({"host", "content-length", "connection", "transfer-encoding",
                            "keep-alive", "accept-encoding"})
UPSTREAM_TIMEOUT_S = 10.0  # the registry is local: 10 s means it is stuck, not slow
SHUTDOWN_POLL_S = 0.05  # how often serve_forever looks for close(): its default 0.5 s slows every test


@dataclass(frozen=True)
class Fault:
    """One phase of answers: ``status`` for ``times`` requests or for ``for_s`` seconds.

    ``body`` defaults to a Confluent-style error body ``{"error_code": status, ...}``;
    ``text`` sends a non-JSON body instead (a gateway's HTML page).
    """

    status: int
    times: int | None = None
    for_s: float | None = None
    retry_after: str | None = None
    body: dict[str, Any] | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if (self.times is None) == (self.for_s is None):
            raise ValueError("a Fault lasts either `times` answers or `for_s` seconds")

    def response(self) -> tuple[bytes, str, dict[str, str]]:
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        if self.text is not None:
            return self.text.encode(), "text/html", headers
        body = self.body or {"error_code": self.status, "message": HTTPStatus(self.status).phrase}
        return json.dumps(body).encode(), "application/vnd.schemaregistry.v1+json", headers


@dataclass(frozen=True)
class Answered:
    """One request the gateway answered: when (monotonic s), what, and with which status."""

    at_s: float
    method: str
    path: str
    status: int
    faulted: bool


@dataclass
class _Plan:
    phases: list[Fault]
    started_s: float  # when the current phase (phases[0]) began
    used: int = 0  # answers the current phase gave


@dataclass
class RegistryGateway:
    """Forwards to ``upstream`` (a registry URL) or answers the current :class:`Fault`."""

    upstream: str
    answered: list[Answered] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: _Plan | None = None
        self._client = httpx.Client(base_url=self.upstream.rstrip("/"), timeout=UPSTREAM_TIMEOUT_S)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(SHUTDOWN_POLL_S,),
                                        name="registry-gateway", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._client.close()

    def __enter__(self) -> RegistryGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fail(self, *phases: Fault) -> None:
        """Answer these phases in turn, starting now; then forward again."""
        with self._lock:
            self._plan = _Plan(list(phases), started_s=time.monotonic())

    def current(self) -> Fault | None:
        """The phase answering now, if any (a time-based one ends even with no request)."""
        with self._lock:
            return self._current(time.monotonic())

    def answers(self, *, faulted: bool | None = None) -> list[Answered]:
        with self._lock:
            return [a for a in self.answered if faulted is None or a.faulted == faulted]

    def _current(self, now_s: float) -> Fault | None:
        """The phase answering at ``now_s`` (lock held); expired phases are dropped."""
        plan = self._plan
        while plan is not None and plan.phases:
            phase = plan.phases[0]
            if phase.times is not None and plan.used >= phase.times:
                plan.phases.pop(0)
                plan.started_s, plan.used = now_s, 0
            elif phase.for_s is not None and now_s >= plan.started_s + phase.for_s:
                plan.phases.pop(0)
                plan.started_s, plan.used = plan.started_s + phase.for_s, 0
            else:
                return phase
        return None

    def _fault_for(self, method: str, path: str) -> Fault | None:
        """The fault answering this request, if any; the answer is recorded either way."""
        now_s = time.monotonic()
        with self._lock:
            phase = self._current(now_s)
            if phase is not None and self._plan is not None:
                self._plan.used += 1
                self.answered.append(Answered(now_s, method, path, phase.status, True))
            return phase

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        response = self._client.request(method, path, headers=headers, content=body or None)
        with self._lock:
            self.answered.append(Answered(time.monotonic(), method, path, response.status_code, False))
        return response


def _handler_for(gateway: RegistryGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = gateway._fault_for(self.command, self.path)
            if fault is not None:
                payload, content_type, extra = fault.response()
                self._reply(fault.status, payload, content_type, extra)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
            try:
                response = gateway._forward(self.command, self.path, headers, body)
            except httpx.HTTPError as exc:  # the registry itself is gone: a gateway says 502
                self._reply(502, json.dumps({"error_code": 502, "message": repr(exc)}).encode(),
                            "application/json", {})
                return
            self._reply(response.status_code, response.content,
                        response.headers.get("Content-Type", "application/json"), {})

        def _reply(self, status: int, payload: bytes, content_type: str, extra: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test asserts on `answered`; stderr stays quiet

    return Handler
