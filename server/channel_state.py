"""The channel state a `hello` carries, read once per channel and position, shared by its joins.

A `ChannelState` is read *after* the channel's position (epoch, seq) is
known, so every event up to that position is in it, and any later event is
still on its way to this instance and reaches the socket after its `hello`.
`ChannelStates` keeps the last one per channel with local watchers and
serves it again while it is at most `viewer_interval` old and no event came
after its position; concurrent joins of a channel wait for one read.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg

from protocol.epg import EpgNow, Program, epg_now
from protocol.format import UnknownTimezone
from server.hub import Room
from store.channels import Stream, get_live_stream, programs_between
from store.errors import StoreUnavailable
from store.lease import Position, Sequencer
from store.presence import Presence
from store.viewers import ViewerCounts, viewer_counts

log = logging.getLogger(__name__)

__all__ = ["EPG_AHEAD", "EPG_BEHIND", "ChannelState", "ChannelStates", "epg_for"]

# The schedule window read for current/next: long programs and a day of look-ahead.
EPG_BEHIND: Final = timedelta(hours=24)
EPG_AHEAD: Final = timedelta(hours=48)
# A read is repeated (a few times at most) if a channel event slipped in while it ran.
READ_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class ChannelState:
    """What every `hello` of one channel shares, read after the position (epoch, seq).

    `taken` is the loop time it was read at: it is reused for another `hello`
    only at the same position and within `viewer_interval` of it.
    """

    epoch: str
    seq: int
    stream: Stream | None
    counts: ViewerCounts
    programs: list[Program]
    taken: float


def epg_for(programs: list[Program], now: datetime, tz: str) -> EpgNow:
    """Current and next program for a watcher in `tz` (UTC if the stored zone went away)."""
    try:
        return epg_now(programs, now, tz)
    except UnknownTimezone:
        return epg_now(programs, now, "UTC")


class ChannelStates:
    """Reads and keeps the `hello` state of channels with local watchers."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        presence: Presence,
        sequencer: Sequencer,
        *,
        session_ttl: float,
        max_age: float,
    ) -> None:
        self._pool = pool
        self._presence = presence
        self._sequencer = sequencer
        self._session_ttl = session_ttl
        self._max_age = max_age
        self._kept: dict[str, ChannelState] = {}

    def forget(self, channel: str) -> None:
        """The room unsubscribed: events stop arriving, so the kept state cannot stay current."""
        self._kept.pop(channel, None)

    async def read(self, room: Room, *, reuse: bool = True) -> ChannelState:
        """Position first, then state: every event up to the position is in the state read.

        Re-read (a few times at most) if a newer event of the same epoch arrived
        meanwhile. With `reuse`, the kept state serves again when it is at most
        `max_age` old and no channel event came after its position: either the
        room, subscribed all along, has received none since (no I/O at all), or
        the sequencer says so (one Redis read). With Redis down the room's own
        position is used; a fresh `hello` follows the reconnect.
        """
        channel = room.channel_id
        if reuse and room.subscribed:
            # Nothing arrived on the bus since the kept state was read: it is still the
            # channel's state as of the room's position.
            kept = self._reusable(channel, Position(room.epoch, room.seq))
            if kept is not None:
                return kept
            # Stale (an event came): one position read and one state read for all the joins
            # waiting here, not a Redis round trip per join (a reconnect storm).
            async with room.reading:
                kept = self._reusable(channel, Position(room.epoch, room.seq))
                if kept is not None:
                    return kept
                return await self._read_fresh(room)
        return await self._read_fresh(room, reuse=reuse)

    async def _read_fresh(self, room: Room, *, reuse: bool = False) -> ChannelState:
        channel = room.channel_id
        for _ in range(READ_ATTEMPTS):
            try:
                pos = await self._sequencer.current(channel)
            except StoreUnavailable as err:
                log.warning("sequence of %s unavailable: %r", channel, err)
                pos = Position(room.epoch, room.seq)
                state = await self._read(channel, pos)
            else:
                room.position(pos.epoch, pos.seq)
                if reuse:
                    state = await self._read_shared(room, pos)
                else:
                    state = self._kept[channel] = await self._read(channel, pos)
            if not (room.epoch == pos.epoch and room.seq > pos.seq):
                break
        return state

    async def _read_shared(self, room: Room, pos: Position) -> ChannelState:
        """The state at `pos`: the kept one if still good, else one read that concurrent
        joins of the channel share (and that is kept for the next ones)."""
        channel = room.channel_id
        if (kept := self._reusable(channel, pos)) is not None:
            return kept
        async with room.reading:
            if (kept := self._reusable(channel, pos)) is not None:
                return kept
            state = self._kept[channel] = await self._read(channel, pos)
            return state

    def _reusable(self, channel: str, pos: Position) -> ChannelState | None:
        state = self._kept.get(channel)
        if (
            state is not None
            and state.seq == pos.seq
            and state.epoch == pos.epoch
            and asyncio.get_running_loop().time() - state.taken <= self._max_age
        ):
            return state
        return None

    async def _read(self, channel: str, pos: Position) -> ChannelState:
        taken = asyncio.get_running_loop().time()
        now = datetime.now(UTC)
        stream, counts, programs = await asyncio.gather(
            get_live_stream(self._pool, channel),
            viewer_counts(self._presence, self._pool, channel, ttl=self._session_ttl),
            programs_between(self._pool, channel, now - EPG_BEHIND, now + EPG_AHEAD),
        )
        return ChannelState(
            epoch=pos.epoch,
            seq=pos.seq,
            stream=stream,
            counts=counts,
            programs=programs,
            taken=taken,
        )
