"""A Faust signal for unit tests: handlers connected, then sent to in order and awaited, as
Faust's ``on_partitions_assigned`` and ``on_partitions_revoked`` do."""

from __future__ import annotations

from typing import Any


class Signal:
    def __init__(self) -> None:
        self.receivers: list[Any] = []

    def connect(self, receiver: Any) -> None:
        self.receivers.append(receiver)

    async def send(self, **kwargs: Any) -> None:
        for receiver in self.receivers:
            await receiver(None, **kwargs)
