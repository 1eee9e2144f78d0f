"""Faults injected into a worker from inside, for tests only: Python imports this module at
start-up when its folder is on the worker's PYTHONPATH (tests/integration/test_stage_faults.py).

``FAULT_FAIL_ONE_SEND_TO=<topic>``: the first send of the worker's producer to that topic
raises, as a send the broker refused would; every later send goes through.
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
