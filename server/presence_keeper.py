"""This instance's part of presence: its shares of each channel, its liveness, its sessions' ends.

- A socket joining or leaving marks its channel; within `flush_delay` (50 ms)
  all marked channels are written, one presence call each, carrying the
  room's exact per-device counts and the sessions that joined (no longer REST
  pollers) or left (pollers from now: they count for session_ttl unless they
  heartbeat, reconnect or end). A connect storm costs one call per channel
  per flush, not one per socket.
- Every session_ttl/3 every share is refreshed (they expire after
  session_ttl, which is how a killed instance's watchers leave the count), the
  instance's liveness row is written (store.sockets: its sessions stay live
  without per-session writes), and sockets past their session's hard
  lifetime get `session` expired and a 4009 close.

Failures are logged; marked channels stay marked and are written on the next
round. Nothing here grows with the number of watchers per second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from protocol.backoff import Backoff
from protocol.values import SessionCloseReason, SessionEndState
from server.conn import Conn
from server.hub import Hub
from server.timers import stop_if_cancelled
from store.errors import StoreError
from store.presence import Presence
from store.sockets import SocketLedger

log = logging.getLogger(__name__)

__all__ = ["PresenceKeeper"]

FLUSH_DELAY: Final = 0.05
_BACKOFF_MAX: Final = 10.0


class PresenceKeeper:
    """Writes this instance's presence shares and liveness (see the module doc)."""

    def __init__(
        self,
        hub: Hub,
        presence: Presence,
        ledger: SocketLedger,
        end: Callable[[Conn, SessionEndState, SessionCloseReason], None],
        *,
        instance_id: str,
        ttl: float,
        flush_delay: float = FLUSH_DELAY,
    ) -> None:
        self.hub = hub
        self.presence = presence
        self.ledger = ledger
        self.end = end
        self.instance_id = instance_id
        self.ttl = ttl
        self.period = max(0.2, ttl / 3)
        self.flush_delay = flush_delay
        self._joined: dict[str, list[str]] = {}
        self._left: dict[str, list[tuple[str, str]]] = {}
        self._marked: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.flushes = 0  # presence writes, for tests and metrics

    # --- joins and leaves ----------------------------------------------------------------

    def joined(self, conn: Conn) -> None:
        """A socket of the session is now attached here."""
        self._joined.setdefault(conn.channel_id, []).append(conn.session_id)
        self._mark(conn.channel_id)

    def left(self, conn: Conn, *, still_watching: bool) -> None:
        """The socket is gone; `still_watching`: its session may go on without it (counted as a
        poller), False when it ended or was replaced by another socket."""
        if still_watching:
            self._left.setdefault(conn.channel_id, []).append((conn.session_id, conn.device_type))
        self._mark(conn.channel_id)

    def changed(self, channel: str) -> None:
        """The room's device counts changed in place (a session moved device)."""
        self._mark(channel)

    def _mark(self, channel: str) -> None:
        self._marked.add(channel)
        if self._timer is None and self._flushing is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_delay, self._start)

    def _start(self) -> None:
        self._timer = None
        self._flushing = asyncio.get_running_loop().create_task(self.flush(), name="presence")
        self._flushing.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing = None
        if not task.cancelled() and (err := task.exception()) is not None:
            log.warning("presence flush failed: %r", err)
        if self._marked and self._timer is None:
            # Marked meanwhile (or failed): write them after another delay.
            self._timer = asyncio.get_running_loop().call_later(
                max(self.flush_delay, 0.5 if task.cancelled() or task.exception() else 0.0),
                self._start,
            )

    async def flush(self) -> None:
        """Write the share of every marked channel now; failed ones stay marked."""
        channels, self._marked = self._marked, set()
        for channel in channels:
            joined = self._joined.pop(channel, [])
            left = self._left.pop(channel, [])
            try:
                await self._write(channel, joined, left)
            except StoreError:
                self._marked.add(channel)
                self._joined.setdefault(channel, []).extend(joined)
                self._left.setdefault(channel, []).extend(left)
                raise

    async def _write(self, channel: str, joined: list[str], left: list[tuple[str, str]]) -> None:
        room = self.hub.rooms.get(channel)
        devices = {d: n for d, n in room.devices.items() if n > 0} if room else {}
        self.flushes += 1
        if devices or joined or left:
            await self.presence.share(
                self.instance_id, channel, devices, self.ttl, joined=joined, left=left
            )
        if not devices:
            await self.presence.drop_share(self.instance_id, channel)

    # --- the periodic round --------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: a round every session_ttl/3; failures back off (capped)."""
        backoff = Backoff(min(self.period, _BACKOFF_MAX), _BACKOFF_MAX)
        while True:
            stop_if_cancelled()
            try:
                await self.round()
                backoff.reset()
                await asyncio.sleep(self.period)
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = backoff.next()
                log.exception("presence round failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)

    async def round(self) -> None:
        """Refresh every share, write the liveness row, end sockets past their lifetime."""
        await self.ledger.alive()
        self._marked.update(ch for ch, room in self.hub.rooms.items() if room.conns)
        await self.flush()
        now = time.time()
        for conn in list(self.hub.sessions.values()):
            if not conn.closing and conn.expires_at.timestamp() <= now:
                self.end(conn, "expired", "expired")

    async def withdraw(self) -> None:
        """Draining or stopping: write pending changes, then take every share back at once."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        try:
            await self.flush()
        except StoreError as err:
            log.warning("presence flush on stop failed: %r", err)
        for channel in list(self.hub.rooms):
            try:
                await self.presence.drop_share(self.instance_id, channel)
            except StoreError as err:
                log.warning("presence of %s not withdrawn (it expires): %r", channel, err)
