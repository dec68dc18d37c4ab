"""Who is watching a channel now, at a cost that grows with instances, not with watchers.

Two kinds of watchers count:

- **Socket watchers.** Each instance knows exactly which sockets it holds and
  publishes its own per-device counts of each channel as a *share* that
  expires after `ttl` (Settings.session_ttl) unless refreshed. An instance
  refreshes its shares every ttl/3 and re-publishes a channel's share at once
  (coalesced) when a socket joins or leaves, so nothing is written per watcher
  per interval, and a killed instance's watchers leave the count when its
  shares expire.
- **REST pollers** (a session with no socket, heartbeating endpoint 36): one
  sorted-set entry per session, scored with its last heartbeat; they count
  while that is within `ttl`. A heartbeat is one O(log n) update; a socket
  join removes the session from the pollers, a socket leave puts it back (it
  keeps counting for `ttl` unless it heartbeats, reconnects or ends). A
  heartbeat of a session whose socket lives on an instance with a live share
  does not make it a poller, so a player doing both is counted once.

`counts` sums the live shares and counts the live pollers per device: O(instances
+ devices). Totals are exact sums; `by_device` always sums to the total.
In-process (`LocalPresence`, one instance, no Redis) and Redis
(store.presence_redis) versions share this contract and one test suite.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from protocol.values import DEVICE_TYPES

__all__ = ["LocalPresence", "NowCounts", "Presence", "device_counts"]


@dataclass(frozen=True, slots=True)
class NowCounts:
    """Watching now on one channel; `by_device` has the six device keys and sums to `total`."""

    total: int
    by_device: dict[str, int]


def device_counts(found: Mapping[str, int]) -> NowCounts:
    """`found` completed with zeros for every device type (others still count)."""
    by_device = {device: int(found.get(device, 0)) for device in DEVICE_TYPES}
    for device, n in found.items():
        by_device.setdefault(device, int(n))
    return NowCounts(total=sum(by_device.values()), by_device=by_device)


class Presence(Protocol):
    async def share(
        self,
        instance_id: str,
        channel: str,
        by_device: Mapping[str, int],
        ttl: float,
        *,
        joined: Sequence[str] = (),
        left: Sequence[tuple[str, str]] = (),
    ) -> None:
        """This instance's exact socket counts on `channel`, valid for `ttl` seconds; sessions
        in `joined` got a socket here (no longer pollers), sessions in `left` (session,
        device) lost theirs (pollers from now on). One call per channel."""
        ...

    async def drop_share(self, instance_id: str, channel: str) -> None:
        """Withdraw this instance's share at once (last watcher gone, draining)."""
        ...

    async def poll(
        self,
        channel: str,
        session_id: str,
        device: str,
        *,
        socket_instance: str | None,
        ttl: float,
    ) -> bool:
        """A REST sign of life: count the session as a poller now, unless its socket
        (`socket_instance`) lives on an instance that still has a share of the channel.
        True when this made it count again (it was not a poller seen within `ttl`), so
        the caller knows the channel's count rose."""
        ...

    async def unpoll(self, channel: str, session_id: str) -> None:
        """Stop counting the session as a poller (its socket joined, or it ended)."""
        ...

    async def counts(self, channel: str, *, ttl: float) -> NowCounts:
        """Live shares plus pollers seen within `ttl`: O(instances + devices)."""
        ...


@dataclass
class _Channel:
    shares: dict[str, tuple[float, dict[str, int]]] = field(default_factory=dict)
    pollers: dict[str, tuple[float, str]] = field(default_factory=dict)  # session: (seen, device)


class LocalPresence:
    """One process is the only instance: dicts on the monotonic clock, same contract."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}

    def _get(self, channel: str) -> _Channel:
        found = self._channels.get(channel)
        if found is None:
            found = self._channels[channel] = _Channel()
        return found

    async def share(
        self,
        instance_id: str,
        channel: str,
        by_device: Mapping[str, int],
        ttl: float,
        *,
        joined: Sequence[str] = (),
        left: Sequence[tuple[str, str]] = (),
    ) -> None:
        state = self._get(channel)
        now = time.monotonic()
        state.shares[instance_id] = (now + ttl, dict(by_device))
        for session_id in joined:
            state.pollers.pop(session_id, None)
        for session_id, device in left:
            state.pollers[session_id] = (now, device)

    async def drop_share(self, instance_id: str, channel: str) -> None:
        self._get(channel).shares.pop(instance_id, None)

    async def poll(
        self,
        channel: str,
        session_id: str,
        device: str,
        *,
        socket_instance: str | None,
        ttl: float,
    ) -> bool:
        state = self._get(channel)
        now = time.monotonic()
        seen = state.pollers.get(session_id)
        if seen is None and socket_instance is not None:
            share = state.shares.get(socket_instance)
            if share is not None and share[0] > now:
                return False
        state.pollers[session_id] = (now, device)
        return seen is None or seen[0] <= now - ttl

    async def unpoll(self, channel: str, session_id: str) -> None:
        self._get(channel).pollers.pop(session_id, None)

    async def counts(self, channel: str, *, ttl: float) -> NowCounts:
        state = self._get(channel)
        now = time.monotonic()
        found: dict[str, int] = {}
        for instance, (expires, by_device) in list(state.shares.items()):
            if expires <= now:
                del state.shares[instance]
                continue
            for device, n in by_device.items():
                found[device] = found.get(device, 0) + n
        for session, (seen, device) in list(state.pollers.items()):
            if seen <= now - ttl:
                del state.pollers[session]
                continue
            found[device] = found.get(device, 0) + 1
        return device_counts(found)
