"""Time-driven work: token refresh per socket, and per channel the lease holder's duties.

Token refresh (TokenClock): each socket's refresh is due at 80 % of its stream
token's life. Sockets are filed into slots of `granularity` seconds and each
slot (not each socket) has one `loop.call_at` handle; a slot fires at its
start, so a refresh is never late, at most one granularity early. The callback
mints and writes in the loop, no task per socket.

Liveness (Liveness): one sweep every ping_interval/4 pings each socket that
received nothing for ping_interval (a pre-built ping frame) and drops one that
received nothing for ping_interval/2 after its ping, so a half-open
connection goes within two intervals. Replaces aiohttp's per-socket heartbeat,
which keeps two timer handles per socket and a task per ping.

Channel duties (one task for all channels): every channel with local
watchers competes for its publisher lease (renewed every LEASE_RENEW). The
holder
- reads the exact viewer count and publishes `viewers` when it changed, at
  most once per `viewer_interval` (a REST join/leave handled here nudges an
  earlier check, still never two publishes within the interval);
- keeps one timer at the channel's next program boundary
  (protocol.epg.next_boundary), publishes `epg` there and re-arms; a schedule
  edit re-arms it. No polling of the schedule.
A holder that dies stops renewing; another instance with watchers takes over
within LEASE_TTL. Draining releases leases at once.

Presence (this instance's shares, its liveness row, sessions' hard
lifetimes) is kept by server.presence_keeper.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg

from protocol.backoff import Backoff
from protocol.epg import next_boundary
from server.conn import Conn
from server.hub import Hub
from server.origin import Origin
from store.channels import programs_between
from store.errors import StoreError, StoreUnavailable
from store.keys import LEASE_RENEW, LEASE_TTL
from store.lease import Leases

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]

log = logging.getLogger(__name__)

__all__ = ["ChannelDuties", "Liveness", "Spawn", "TokenClock", "stop_if_cancelled"]

TOKEN_REFRESH_SHARE: Final = 0.8
# A boundary timer sleeps at most this long, then re-reads the schedule (clock drift, far edges).
EPG_RECHECK: Final = 3600.0
# A boundary timer that fires this early (loop clock vs wall clock) just re-arms.
EPG_EARLY: Final = 0.25
# The span of schedule read around "now" to find the next boundary.
EPG_SPAN: Final = timedelta(hours=48)
_BACKOFF_MAX: Final = 10.0

_FAILURES: Final = (StoreError, OSError)


def stop_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled but the error never reached it.

    Some awaits swallow a cancel that lands just as they complete (asyncpg's own
    wait_for on Python < 3.12 returns the finished result instead); a loop that
    then carries on would keep `stop()` waiting for it forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class TokenClock:
    """Stream-token refreshes of all local sockets, on one timer handle per slot.

    A slot holds session ids, not sockets, so a socket that closed is not kept
    alive until its slot comes due; a socket re-armed in the meantime (a new
    token) is skipped in its old slot. `close` cancels every handle.
    """

    def __init__(self, hub: Hub, callback: Callable[[Conn], None], granularity: float) -> None:
        self.hub = hub
        self.callback = callback
        self.granularity = granularity
        self._slots: dict[int, list[str]] = {}
        self._handles: dict[int, asyncio.TimerHandle] = {}

    def arm(self, conn: Conn) -> None:
        """Arm (or re-arm) the socket's refresh at 80 % of its current token's life."""
        life = conn.token_expires_at - conn.token_issued_at
        slot = max(1, int((conn.token_issued_at + TOKEN_REFRESH_SHARE * life) // self.granularity))
        conn.token_slot = slot
        members = self._slots.get(slot)
        if members is not None:
            members.append(conn.session_id)
            return
        self._slots[slot] = [conn.session_id]
        loop = asyncio.get_running_loop()
        delay = max(0.0, slot * self.granularity - time.time())
        self._handles[slot] = loop.call_at(loop.time() + delay, self._fire, slot)

    def _fire(self, slot: int) -> None:
        self._handles.pop(slot, None)
        sessions = self.hub.sessions
        for session_id in self._slots.pop(slot, ()):
            conn = sessions.get(session_id)
            if conn is not None and conn.token_slot == slot and not conn.closing:
                conn.token_slot = 0
                try:
                    self.callback(conn)
                except Exception:
                    log.exception("token refresh of %s failed", session_id)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._slots.clear()


class Liveness:
    """Pings quiet sockets and drops silent ones, for the whole hub on one timer (see module doc)."""

    def __init__(self, hub: Hub, interval: float) -> None:
        self.hub = hub
        self.interval = interval

    async def run(self) -> None:
        """Until cancelled. The sweep does no I/O but writes; a failure is logged, not fatal."""
        loop = asyncio.get_running_loop()
        while True:
            stop_if_cancelled()
            await asyncio.sleep(self.interval / 4)
            try:
                self.hub.sweep(loop.time(), idle=self.interval, grace=self.interval / 2)
            except Exception:
                log.exception("liveness sweep failed")


class _Held:
    """A channel whose lease this instance holds."""

    __slots__ = ("epg_timer", "last_check", "last_publish", "nudged")

    def __init__(self) -> None:
        self.epg_timer: asyncio.TimerHandle | None = None
        self.last_check = float("-inf")
        self.last_publish = float("-inf")
        self.nudged = False

    def cancel(self) -> None:
        if self.epg_timer is not None:
            self.epg_timer.cancel()
            self.epg_timer = None


class ChannelDuties:
    """The lease holder's per-channel work (see the module doc), for all local channels."""

    def __init__(
        self,
        hub: Hub,
        leases: Leases,
        origin: Origin,
        pool: asyncpg.Pool,
        spawn: Spawn,
        *,
        instance_id: str,
        interval: float,
    ) -> None:
        self.hub = hub
        self.leases = leases
        self.origin = origin
        self.pool = pool
        self.spawn = spawn
        self.instance_id = instance_id
        self.held: dict[str, _Held] = {}
        self.interval = interval
        self._wake = asyncio.Event()
        self._last_lease = float("-inf")

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: tend leases, publish viewer changes. Errors are logged, backed off."""
        loop = asyncio.get_running_loop()
        period = max(0.05, min(self.interval, LEASE_RENEW))
        backoff = Backoff(period, _BACKOFF_MAX)
        while True:
            stop_if_cancelled()
            try:
                now = loop.time()
                if now - self._last_lease >= LEASE_RENEW * 0.9:
                    self._last_lease = now
                    await self._tend_leases()
                await self._check_viewers(loop.time())
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = backoff.next()
                log.exception("channel duties failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
            # Sleep until `period` passes or a nudge. Not asyncio.timeout: on Python 3.11 a
            # cancel that lands as the timeout fires is swallowed, and the loop never ends.
            self._wake.clear()
            alarm = loop.call_later(period, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                alarm.cancel()

    def nudge(self, channel: str) -> None:
        """A REST request here changed the channel's sessions: check its count soon."""
        held = self.held.get(channel)
        if held is not None:
            held.nudged = True
            self._wake.set()

    async def _tend_leases(self) -> None:
        rooms = self.hub.rooms
        wanted = [ch for ch, room in rooms.items() if room.conns and not self.hub.draining]
        results = await asyncio.gather(*(self._acquire(ch) for ch in wanted))
        for channel, got in zip(wanted, results, strict=True):
            if got and channel not in self.held:
                self.held[channel] = _Held()
                log.info("holding the lease of %s", channel)
                self.spawn(self.arm_epg(channel), f"epg-arm-{channel}")
            elif not got and channel in self.held:
                self.held.pop(channel).cancel()
                self.origin.forget(channel)
                log.info("lost the lease of %s", channel)
        for channel in [ch for ch in self.held if ch not in wanted]:
            await self.release(channel)

    async def _acquire(self, channel: str) -> bool:
        try:
            return await self.leases.acquire(channel, self.instance_id, LEASE_TTL)
        except StoreUnavailable as err:
            log.warning("lease of %s unavailable: %r", channel, err)
            return False

    async def _check_viewers(self, now: float) -> None:
        due = [
            ch
            for ch, h in self.held.items()
            if now - h.last_publish >= self.interval
            and (h.nudged or now - h.last_check >= self.interval * 0.95)
        ]
        if not due:
            return
        results = await asyncio.gather(
            *(self.origin.viewers(ch) for ch in due), return_exceptions=True
        )
        for channel, result in zip(due, results, strict=True):
            held = self.held.get(channel)
            if held is None:
                continue
            held.nudged = False
            held.last_check = now
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                log.warning("viewers of %s: %r", channel, result)
            elif result:
                held.last_publish = now

    async def release(self, channel: str) -> None:
        held = self.held.pop(channel, None)
        if held is None:
            return
        held.cancel()
        self.origin.forget(channel)
        try:
            await self.leases.release(channel, self.instance_id)
        except StoreUnavailable as err:
            log.warning("release of %s: %r (it expires by itself)", channel, err)

    async def release_all(self) -> None:
        for channel in list(self.held):
            await self.release(channel)

    # --- EPG boundaries ------------------------------------------------------------------

    def schedule_changed(self, channel: str) -> None:
        """The schedule was edited (here or elsewhere): re-arm the boundary timer if we hold it."""
        if channel in self.held:
            self.spawn(self.arm_epg(channel), f"epg-arm-{channel}")

    async def arm_epg(self, channel: str, after: datetime | None = None) -> None:
        """Read the schedule and set one timer at the next boundary after `after` (default now)."""
        if channel not in self.held:
            return
        now = datetime.now(UTC)
        start = max(now, after) if after else now
        try:
            programs = await programs_between(
                self.pool, channel, start - EPG_SPAN, start + EPG_SPAN
            )
        except _FAILURES as err:
            log.warning("schedule of %s unavailable: %r; retrying", channel, err)
            programs, boundary = [], None
        else:
            boundary = next_boundary(programs, start)
        held = self.held.get(channel)
        if held is None:
            return
        held.cancel()
        delay = EPG_RECHECK if boundary is None else (boundary - now).total_seconds()
        if not programs and boundary is None:
            delay = min(delay, 60.0)
        loop = asyncio.get_running_loop()
        held.epg_timer = loop.call_at(
            loop.time() + max(0.0, min(delay, EPG_RECHECK)), self._boundary_due, channel, boundary
        )

    def _boundary_due(self, channel: str, boundary: datetime | None) -> None:
        held = self.held.get(channel)
        if held is not None:
            held.epg_timer = None
            self.spawn(self._at_boundary(channel, boundary), f"epg-boundary-{channel}")

    async def _at_boundary(self, channel: str, boundary: datetime | None) -> None:
        now = datetime.now(UTC)
        if boundary is None or (boundary - now).total_seconds() > EPG_EARLY:
            await self.arm_epg(channel)  # a re-check, or woke up too early
            return
        at = max(now, boundary)
        try:
            await self.origin.epg(channel, at=at)
        except _FAILURES as err:
            log.warning("epg of %s at %s not published: %r", channel, at, err)
        await self.arm_epg(channel, after=at)
