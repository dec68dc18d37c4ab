"""Where channel events originate: read the state, take the next seq, envelope once, publish.

Each event is built once, by one instance, and published to the bus, which
brings it to every instance with watchers of the channel (this one included):

- `stream` (go-live, offline, health/title) and a forced `epg` after a
  schedule edit: the instance that handled the admin request, after commit;
- `viewers` and `epg` at program boundaries: the holder of the channel's
  lease (server.timers.ChannelDuties), and only when they changed;
- control messages (a session ended or changed quality, keys rotated): the
  instance that handled the REST request, for the instance holding the socket.

A publish that fails is counted and logged: REST has already committed, and
the next change (or a reconnect's fresh `hello`) carries the state.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from typing import Final

import asyncpg
import msgspec

from protocol import bus as wire
from protocol.bus import Envelope, EpgEvent, Kind
from protocol.epg import current_program, next_program
from protocol.messages import StreamStatus, encode_server, viewer_numbers, viewers_message
from server.channel_state import EPG_AHEAD, EPG_BEHIND
from server.hub_stats import HubStats
from store.bus import Bus
from store.channels import get_live_stream, programs_between
from store.errors import StoreUnavailable
from store.lease import Position, Sequencer
from store.presence import Presence
from store.viewers import record_peaks

log = logging.getLogger(__name__)

__all__ = ["Origin"]

# The holder re-reads a channel's stored peak this often (another reader may have raised it).
PEAK_REREAD: Final = 30.0


class Origin:
    """Builds and publishes this instance's channel events (see the module doc for which)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        presence: Presence,
        bus: Bus,
        sequencer: Sequencer,
        stats: HubStats,
        *,
        instance_id: str,
        session_ttl: float,
    ) -> None:
        self._pool = pool
        self._presence = presence
        # channel -> (UTC day, today's peak as stored, monotonic time read): the holder writes
        # a peak only when its count beats it, and re-reads it now and then.
        self._peaks: dict[str, tuple[date, int, float]] = {}
        self._bus = bus
        self._sequencer = sequencer
        self._stats = stats
        self._instance_id = instance_id
        self._session_ttl = session_ttl

    async def _publish(self, channel: str, envelope: Envelope, payload: bytes) -> None:
        try:
            await self._bus.publish(channel, wire.pack(envelope, payload))
        except StoreUnavailable as err:
            self._stats.publish_failures += 1
            log.warning("publish %s on %s failed: %r", envelope.type, channel, err)
            return
        self._stats.published[envelope.type] += 1

    def _envelope(
        self,
        channel: str,
        kind: Kind,
        type_: str,
        pos: Position | None,
        ts: float,
        target: str | None = None,
    ) -> Envelope:
        return Envelope(
            channel=channel,
            kind=kind,
            type=type_,
            epoch=pos.epoch if pos else "",
            seq=pos.seq if pos else 0,
            instance_id=self._instance_id,
            ts=ts,
            target=target,
        )

    async def stream(self, channel: str) -> None:
        """`stream`: the channel's live stream as committed now (or offline)."""
        stream = await get_live_stream(self._pool, channel)
        pos = await self._sequencer.next(channel)
        ts = time.time()
        msg = StreamStatus(
            epoch=pos.epoch,
            seq=pos.seq,
            ts=ts,
            stream_id=stream.stream_id if stream else None,
            is_live=stream is not None,
            health=stream.health if stream else None,
            title=stream.title if stream else None,
        )
        await self._publish(
            channel, self._envelope(channel, Kind.BROADCAST, "stream", pos, ts), encode_server(msg)
        )

    async def viewers(self, channel: str) -> bool:
        """The holder's tick: publish the exact count if it changed since the last `viewers`."""
        now = await self._presence.counts(channel, ttl=self._session_ttl)
        watching, peak_today = now.total, await self._peak_today(channel, now.total)
        change = await self._sequencer.next_if_changed(
            channel, "viewers", f"{watching},{peak_today}"
        )
        if change is None:
            return False
        ts = time.time()
        previous = int(change.previous.split(",")[0]) if change.previous else watching
        numbers = viewer_numbers(watching, watching - previous, peak_today)
        msg = viewers_message(change.epoch, change.seq, ts, numbers)
        pos = Position(change.epoch, change.seq)
        await self._publish(
            channel, self._envelope(channel, Kind.BROADCAST, "viewers", pos, ts), encode_server(msg)
        )
        return True

    async def _peak_today(self, channel: str, watching: int) -> int:
        """Today's peak, raised in PostgreSQL only when `watching` beats it (or it is old)."""
        day = datetime.now(UTC).date()
        known = self._peaks.get(channel)
        clock = time.monotonic()
        fresh = known is not None and clock - known[2] < PEAK_REREAD
        if known is not None and fresh and known[0] == day and watching <= known[1]:
            return known[1]
        peak_today, _, _ = await record_peaks(self._pool, channel, watching)
        self._peaks[channel] = (day, peak_today, clock)
        return peak_today

    def forget(self, channel: str) -> None:
        """The lease is gone: the next holder reads the peaks afresh."""
        self._peaks.pop(channel, None)

    async def epg(self, channel: str, *, at: datetime | None = None, force: bool = False) -> bool:
        """Current and next program at `at` (default now); unless `force`, only if they changed.

        The programs travel in the envelope, not a rendered frame: each instance
        renders them once per time zone its watchers use.
        """
        now = at or datetime.now(UTC)
        programs = await programs_between(self._pool, channel, now - EPG_BEHIND, now + EPG_AHEAD)
        current, upcoming = current_program(programs, now), next_program(programs, now)
        if force:
            pos = await self._sequencer.next(channel)
        else:
            key = (
                f"{current.program_id if current else ''}|{upcoming.program_id if upcoming else ''}"
            )
            change = await self._sequencer.next_if_changed(channel, "epg", key)
            if change is None:
                return False
            pos = Position(change.epoch, change.seq)
        event = EpgEvent(programs=[p for p in (current, upcoming) if p is not None])
        envelope = self._envelope(channel, Kind.EPG, "epg", pos, now.timestamp())
        await self._publish(channel, envelope, msgspec.json.encode(event))
        return True

    async def control(
        self, channel: str, kind: Kind, target: str | None, event: msgspec.Struct | None = None
    ) -> None:
        """A message for the instance holding `target`'s socket (or all, for key rotation)."""
        payload = msgspec.json.encode(event) if event is not None else b""
        await self._publish(
            channel, self._envelope(channel, kind, kind.value, None, time.time(), target), payload
        )
