"""The in-process bus: used when there is no Redis URL (one instance), same contract as Redis.

A `LocalBroker` is the shared medium; each `LocalBus` is one instance's
attachment to it, so tests can run several in-process instances on one
broker. Delivery is asynchronous (scheduled with `call_soon`, in publish
order), as over Redis: `publish` never runs a subscriber's code inline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["LocalBroker", "LocalBus"]

Deliver = Callable[[str, bytes], None]


class LocalBroker:
    def __init__(self) -> None:
        self.subscribers: dict[str, set[LocalBus]] = {}

    def publish(self, channel: str, data: bytes) -> int:
        buses = self.subscribers.get(channel, ())
        loop = asyncio.get_running_loop()
        for bus in buses:
            loop.call_soon(bus._receive, channel, data)
        return len(buses)


class LocalBus:
    """Subscriptions of one instance; `reconnects` stays 0 (there is no link to lose)."""

    def __init__(self, broker: LocalBroker | None = None) -> None:
        self.broker = broker or LocalBroker()
        self.reconnects = 0
        self.channels: set[str] = set()
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver, on_reconnect: Callable[[], None]) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        for channel in list(self.channels):
            await self.unsubscribe(channel)
        self._deliver = None

    async def publish(self, channel: str, data: bytes) -> None:
        self.broker.publish(channel, data)

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        self.broker.subscribers.setdefault(channel, set()).add(self)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        subs = self.broker.subscribers.get(channel)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self.broker.subscribers[channel]

    def _receive(self, channel: str, data: bytes) -> None:
        # A message already scheduled when the channel was unsubscribed is dropped,
        # as Redis would not have sent it.
        if self._deliver is not None and channel in self.channels:
            self._deliver(channel, data)
