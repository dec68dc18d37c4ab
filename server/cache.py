"""Short-lived per-instance reads of channel facts, for the hot REST paths (endpoint 36).

What is cached, and for how long: a creator's channel and live stream
(store.channels.channel_snapshot), a channel's viewer counts
(store.viewers.viewer_counts: presence and peaks) and its programs around now
(store.channels.programs_between), each for at most `max_age` seconds
(Settings.viewer_interval, 1 s by default) after the read started; and the
current/next program derived from those programs, once per channel, zone and
second.

Invalidation. Streams and schedules change only through the admin API, which
tells the real-time layer; it drops the entries here at once on the instance
that made the change (`stream_changed`, `schedule_changed`), and on every
instance subscribed to the channel when the matching `stream` / `epg` event
arrives on the bus. A REST join or leave handled here drops the channel's
counts (`viewers_changed`), as does a `viewers` event. An instance with no
watchers of the channel hears nothing and serves what it read for at most
`max_age`: that is the staleness bound of everything here. Viewer counts may
be that old anyway (the websocket pushes at most one per viewer_interval).

Nothing here decides who may do what: ownership and liveness of sessions,
entitlements and tokens are always read fresh.

Concurrent misses of one key share one read (single flight), so a burst of
requests costs one query per key per `max_age`. A read started before an
invalidation is handed to the requests already waiting for it but not kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Generic, TypeVar

import asyncpg

from protocol.epg import EpgNow, Program, epg_now
from store import channels
from store.channels import ChannelSnapshot
from store.presence import Presence
from store.viewers import ViewerCounts, viewer_counts

__all__ = ["EPG_AHEAD", "EPG_BEHIND", "ChannelCache"]

# The window of programs kept around "now": wide enough for current and next at any moment of
# the entry's life (a long program started up to a day ago, the next one up to two days ahead).
EPG_BEHIND: Final = timedelta(days=1)
EPG_AHEAD: Final = timedelta(days=2)
# Past this many entries in one table, expired ones are swept on the next insert.
SWEEP_AT: Final = 4096

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _retrieve(future: asyncio.Future[Any]) -> None:
    """A failed read whose requests all went away is not an unhandled error: they got a 5xx."""
    if not future.cancelled():
        future.exception()


class _Table(Generic[K, V]):
    """One kind of read: `load(key)` results kept for `max_age` seconds, with single flight."""

    def __init__(self, load: Callable[[K], Awaitable[V]], max_age: float) -> None:
        self._load = load
        self.max_age = max_age
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation: dict[K, int] = {}

    async def get(self, key: K) -> V:
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] <= self.max_age:
            return entry[1]
        pending = self._loading.get(key)
        if pending is None:
            pending = self._loading[key] = asyncio.ensure_future(self._read(key))
            pending.add_done_callback(_retrieve)
        # Shielded: a request that goes away does not cancel the read others wait for.
        return await asyncio.shield(pending)

    async def _read(self, key: K) -> V:
        generation = self._generation.get(key, 0)
        started = time.monotonic()
        try:
            value = await self._load(key)
        finally:
            if self._generation.get(key, 0) == generation:
                self._loading.pop(key, None)
        if self._generation.get(key, 0) == generation:
            if len(self._entries) >= SWEEP_AT:
                self._sweep(started)
            self._entries[key] = (started, value)
        return value

    def _sweep(self, now: float) -> None:
        for key in [k for k, (at, _) in self._entries.items() if now - at > self.max_age]:
            del self._entries[key]

    def drop_loading(self) -> None:
        """Forget every read in flight (their results are not kept)."""
        for key in list(self._loading):
            self.drop(key)

    def drop(self, key: K) -> None:
        """Forget `key`; a read in flight is not kept and later requests read again."""
        self._entries.pop(key, None)
        self._loading.pop(key, None)
        self._generation[key] = self._generation.get(key, 0) + 1


class ChannelCache:
    """The reads endpoint 36 makes on every call, kept briefly (see the module doc)."""

    def __init__(
        self, pool: asyncpg.Pool, presence: Presence, *, max_age: float, session_ttl: float
    ) -> None:
        self.pool = pool
        self.presence = presence
        self.session_ttl = session_ttl
        self._snapshots: _Table[str, ChannelSnapshot | None] = _Table(self._read_snapshot, max_age)
        self._counts: _Table[str, ViewerCounts] = _Table(self._read_counts, max_age)
        self._programs: _Table[str, list[Program]] = _Table(self._read_programs, max_age)
        # Which creator's snapshot holds a channel, to drop it by channel id.
        self._creator_of: dict[str, str] = {}
        # (channel, zone) -> (unix second, programs it was computed from, current/next then).
        self._epg: dict[tuple[str, str], tuple[int, list[Program], EpgNow]] = {}

    # --- reads ---------------------------------------------------------------------------

    async def snapshot(self, creator_id: str) -> ChannelSnapshot | None:
        """Creator, channel and live stream (None: unknown creator); `now` is when it was read."""
        return await self._snapshots.get(creator_id)

    async def counts(self, channel_id: str) -> ViewerCounts:
        return await self._counts.get(channel_id)

    async def epg(self, channel_id: str, now: datetime, tz: str) -> EpgNow:
        """Current and next program (endpoint 36's `epg`) as of the whole second of `now`.

        From the channel's programs overlapping [read - EPG_BEHIND, read + EPG_AHEAD),
        read at most max_age before `now`: the same current and next as a fresh read,
        except for a program starting in the last max_age of the two-day look-ahead.
        Computed once per channel, zone and second; every request in that second
        shares it. Raises `UnknownTimezone` for a bad `tz`.
        """
        programs = await self._programs.get(channel_id)
        second = int(now.timestamp())
        key = (channel_id, tz)
        hit = self._epg.get(key)
        if hit is not None and hit[0] == second and hit[1] is programs:
            return hit[2]
        value = epg_now(programs, datetime.fromtimestamp(second, UTC), tz)
        if len(self._epg) >= SWEEP_AT:
            self._epg.clear()
        self._epg[key] = (second, programs, value)
        return value

    async def _read_snapshot(self, creator_id: str) -> ChannelSnapshot | None:
        snap = await channels.channel_snapshot(self.pool, creator_id)
        if snap is not None and snap.channel is not None:
            self._creator_of[snap.channel.channel_id] = creator_id
        return snap

    async def _read_counts(self, channel_id: str) -> ViewerCounts:
        return await viewer_counts(self.presence, self.pool, channel_id, ttl=self.session_ttl)

    async def _read_programs(self, channel_id: str) -> list[Program]:
        now = datetime.now(UTC)
        return await channels.programs_between(
            self.pool, channel_id, now - EPG_BEHIND, now + EPG_AHEAD
        )

    # --- invalidation (the real-time layer calls these) ----------------------------------

    def stream_changed(self, channel_id: str) -> None:
        creator_id = self._creator_of.get(channel_id)
        if creator_id is not None:
            self._snapshots.drop(creator_id)
        else:  # not read yet: whichever first read is in flight may predate the change
            self._snapshots.drop_loading()

    def schedule_changed(self, channel_id: str) -> None:
        self._programs.drop(channel_id)

    def viewers_changed(self, channel_id: str) -> None:
        self._counts.drop(channel_id)
