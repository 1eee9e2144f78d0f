"""Faults injected into a worker from inside, for tests only: Python imports this module at
start-up when its folder is on the worker's PYTHONPATH (tests/integration/test_stage_faults.py).

``FAULT_FAIL_ONE_SEND_TO=<topic>``: the first send of the worker's producer to that topic
raises, as a send the broker refused would; every later send goes through.

``FAULT_CRASH_AGENT_READING=<topic>``: the first batch an agent takes from that topic raises
inside the agent's loop, as a bug would; Faust restarts the agent (tests/integration/test_health.py).
"""

from __future__ import annotations

import os
from typing import Any

_topic = os.environ.get("FAULT_FAIL_ONE_SEND_TO")

if _topic:
    from faust.transport.drivers import aiokafka as _driver

    _send = _driver.Producer.send
    _failed: list[str] = []

    async def _failing_once(self: Any, topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic == _topic and not _failed:
            _failed.append(topic)
            raise ConnectionError(f"injected by the test: the broker refused a send to {topic}")
        return await _send(self, topic, *args, **kwargs)

    _driver.Producer.send = _failing_once

_crash_topic = os.environ.get("FAULT_CRASH_AGENT_READING")

if _crash_topic:
    from faust import streams as _streams

    _noack_take = _streams.Stream.noack_take
    _crashed: list[str] = []

    async def _crashing_take(self: Any, max_: int, within: Any) -> Any:
        async for batch in _noack_take(self, max_, within):
            if not _crashed and batch and getattr(batch[0].message, "topic", None) == _crash_topic:
                _crashed.append(_crash_topic)
                raise RuntimeError(f"injected by the test: an agent reading {_crash_topic} raised")
            yield batch

    _streams.Stream.noack_take = _crashing_take
