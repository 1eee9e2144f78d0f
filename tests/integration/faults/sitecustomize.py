"""Faults injected into a worker from inside, for tests only: Python imports this module at
start-up when its folder is on the worker's PYTHONPATH (tests/integration/test_stage_faults.py).

``FAULT_FAIL_ONE_SEND_TO=<topic>``: the first send of the worker's producer to that topic
raises, as a send the broker refused would; every later send goes through.

``FAULT_CRASH_AGENT_READING=<topic>``: the first batch an agent takes from that topic raises
inside the agent's loop, as a bug would; Faust restarts the agent (tests/integration/test_health.py).

``FAULT_KILL_DURING_REFETCH=<topic>``: after a rebalance one record of that topic never
reaches its stream, and the process SIGKILLs itself while the partition is fetched again.
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

_refetch_topic = os.environ.get("FAULT_KILL_DURING_REFETCH")

if _refetch_topic:
    import signal

    from faust.transport import consumer as _consumer

    _getmany = _consumer.Consumer.getmany
    _seen: dict[str, Any] = {"generation": None, "dropped": None}

    async def _dropping_getmany(self: Any, timeout: float) -> Any:
        """``FAULT_KILL_DURING_REFETCH=<topic>``: after the first rebalance, one record of that
        topic never reaches its stream, as Faust's fetch loop drops records around a takeover:
        the record its stream expects next, once the stream has had one since the assignment
        (a record dropped earlier may be fetched again by the seek to the committed offset).
        The consumer must find the miss and fetch the partition again; while records delivered
        past the gap wait to come again (superseded), the process kills itself with SIGKILL."""
        async for tp, message in _getmany(self, timeout):
            generation = self.app.consumer_generation_id
            if _seen["generation"] is None:
                _seen["generation"] = generation
            deliveries = getattr(self, "deliveries", None)
            if (_seen["dropped"] is None and tp.topic == _refetch_topic and deliveries is not None
                    and generation != _seen["generation"]
                    and deliveries._next.get(tp) == message.offset):  # the one its stream expects next
                _seen["dropped"] = (tp, message.offset)
                print(f"fault: dropped {tp.topic}:{tp.partition}@{message.offset} after the rebalance",
                      flush=True)
                continue
            if (_seen["dropped"] is not None and deliveries is not None
                    and deliveries.refetch and len(self.superseded)):
                print(f"fault: kill -9 during the refetch of {dict(deliveries.refetch)}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            yield tp, message

    _consumer.Consumer.getmany = _dropping_getmany

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
