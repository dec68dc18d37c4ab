"""The real-time node: wires this instance's hub, bus, leases and timers, and runs them.

Like centrifuge's node.go, it owns no logic of its own beyond joining and
leaving a channel; each job is a module of its own:

    server.hub            the local sockets and writing frames to them
    server.channel_state  the state a `hello` carries, read once per channel
    server.session_ops    one socket's session: hello, tokens, client messages, end
    server.origin         where channel events are built and published (once)
    server.delivery       what arrives from the bus and reaches the sockets
    server.timers         token refresh, liveness, lease duties
    server.presence_keeper this instance's presence shares and liveness row

`Realtime` is also the `ChannelEvents` REST handlers notify after their
commit (server.events). With no Redis URL the bus, sequence and leases are
in-process (same code paths); `build` picks the backends from the settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Coroutine
from typing import Any

import asyncpg

from protocol.bus import Kind, SessionEvent
from protocol.errors import CloseCode
from protocol.values import SessionEndReason
from server.cache import ChannelCache
from server.channel_state import ChannelStates
from server.config import Settings
from server.conn import Conn
from server.delivery import Delivery
from server.hub import Hub
from server.origin import Origin
from server.presence_keeper import PresenceKeeper
from server.session_ops import SessionOps
from server.signing import StreamSigner
from server.timers import ChannelDuties, Liveness
from store.bus import Bus, RedisBus
from store.bus_local import LocalBus
from store.errors import StoreError, StoreUnavailable
from store.keys import Keys
from store.lease import (
    Leases,
    LocalLeases,
    LocalSequencer,
    RedisLeases,
    RedisSequencer,
    Sequencer,
)
from store.presence import LocalPresence, Presence
from store.presence_redis import RedisPresence
from store.redis_client import make_redis
from store.sockets import SocketLedger

log = logging.getLogger(__name__)

__all__ = ["Realtime", "build"]


class Realtime:
    """This instance's real-time side; also the `ChannelEvents` REST handlers call."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        bus: Bus,
        sequencer: Sequencer,
        leases: Leases,
        instance_id: str,
        *,
        signer: StreamSigner,
        presence: Presence,
        redis: Any | None = None,
    ) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.pool = pool  # the websocket endpoint claims sessions with it
        self.bus = bus
        self.sequencer = sequencer
        self.leases = leases
        self.signer = signer
        self.presence = presence
        # The REST read cache this layer keeps honest (server.cache).
        self.cache = cache = ChannelCache(
            pool, presence, max_age=settings.viewer_interval, session_ttl=settings.session_ttl
        )
        self.ledger = SocketLedger(pool, instance_id)
        self.redis = redis  # the command client, closed last
        # A socket that does not take its close frame within a ping interval is gone.
        self.hub = Hub(
            soft_limit=settings.ws_soft_limit,
            hard_limit=settings.ws_hard_limit,
            close_timeout=max(1.0, settings.ping_interval),
        )
        self.states = ChannelStates(
            pool,
            presence,
            sequencer,
            session_ttl=settings.session_ttl,
            max_age=settings.viewer_interval,
        )
        self.ops = SessionOps(settings, pool, self.hub, signer, self.states)
        self.origin = Origin(
            pool,
            presence,
            bus,
            sequencer,
            self.hub.stats,
            instance_id=instance_id,
            session_ttl=settings.session_ttl,
        )
        self.duties = ChannelDuties(
            self.hub,
            leases,
            self.origin,
            pool,
            self.spawn,
            instance_id=instance_id,
            interval=settings.viewer_interval,
        )
        self.delivery = Delivery(
            self.hub,
            self.ops,
            cache,
            signer,
            self.spawn,
            instance_id=instance_id,
            schedule_changed=self.duties.schedule_changed,
        )
        self.keeper = PresenceKeeper(
            self.hub,
            presence,
            self.ledger,
            self.ops.end,
            instance_id=instance_id,
            ttl=settings.session_ttl,
        )
        self.ops.device_moved = self.keeper.changed
        self.liveness = Liveness(self.hub, settings.ping_interval)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resync: asyncio.Task[None] | None = None
        self._loops: list[asyncio.Task[None]] = []

    @property
    def bus_reconnects(self) -> int:
        """For metrics, read at scrape time like `hub.stats`."""
        return self.bus.reconnects

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start(self.delivery.deliver, self._bus_reconnected)
        self._loops = [
            asyncio.create_task(self.duties.run(), name="channel-duties"),
            asyncio.create_task(self.keeper.run(), name="presence-keeper"),
            asyncio.create_task(self.liveness.run(), name="liveness"),
        ]

    async def drain(self) -> None:
        """SIGTERM: refuse new sockets, close all with 1012, hand leases over at once."""
        await self.hub.drain(CloseCode.DRAINING)
        await self.duties.release_all()
        await self.keeper.withdraw()

    async def stop(self) -> None:
        """Cancel loops and spawned work, then close the bus. Safe after `drain` or without it.

        A loop that had died of an error is logged here; cancellation is not an error.
        """
        tasks = [*self._loops, *self._tasks, *([self._resync] if self._resync else [])]
        for task in tasks:
            task.cancel()
        for task, result in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True)):
            if isinstance(result, Exception):
                log.error("%s had failed", task.get_name(), exc_info=result)
        self.ops.tokens.close()
        try:
            await self.hub.wait_closed()
            await self.duties.release_all()
            await self.keeper.withdraw()
            await self._close_ledger()
            await self.bus.close()
        finally:
            if self.redis is not None:
                await self.redis.aclose()

    async def _close_ledger(self) -> None:
        try:
            await self.ledger.close()
        except StoreError as err:
            log.warning(
                "socket releases not written (the sessions go quiet by themselves): %r", err
            )

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run one piece of event work in the background; failures are logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("%s failed", task.get_name(), exc_info=err)

    # --- joining and leaving -------------------------------------------------------------

    async def join(self, conn: Conn, *, held_elsewhere: bool = True) -> None:
        """Subscribe the channel if this is its first local watcher, then send the `hello`.

        `held_elsewhere`: another instance took a socket for this session before and
        may still hold it; it is told over the bus that this one replaces it. The
        caller must call `leave` afterwards, also if this raises.
        """
        room = self.hub.room(conn.channel_id)
        room.members += 1
        async with room.lock:
            if not room.subscribed:
                await self.bus.subscribe(conn.channel_id)
                room.subscribed = True
        await self.signer.version(conn.channel_id)  # token timers mint synchronously from the cache
        state = await self.states.read(room)
        # From here to the hello nothing awaits: no channel event can slip in between.
        previous = self.hub.attach(conn)
        if previous is not None:
            self.ops.end(previous, "replaced", "connected again")
        room.stream_id = state.stream.stream_id if state.stream else None
        conn.stream_id = room.stream_id
        self.hub.send(conn, "hello", self.ops.hello(conn, state))
        self.keeper.joined(conn)
        if previous is None and held_elsewhere:
            # The session may still have a socket on another instance: replace it there.
            await self.origin.control(
                conn.channel_id,
                Kind.SESSION_ENDED,
                conn.session_id,
                SessionEvent(state="replaced", reason="connected again", keep=conn.conn_id),
            )

    async def leave(self, conn: Conn) -> None:
        """Forget the socket; unsubscribe and give up the lease after the channel's last watcher.

        A session that may go on without its socket (a drop, a drain, a client gone
        quiet) counts as a REST poller from now on; one that ended or was replaced
        by another socket does not.
        """
        attached = self.hub.sessions.get(conn.session_id) is conn
        self.hub.detach(conn)
        if attached:
            ended = conn.close_code in (CloseCode.SESSION_ENDED, CloseCode.FORBIDDEN)
            self.keeper.left(conn, still_watching=not ended)
            if not ended:
                self.ledger.release(conn.session_id)
        room = self.hub.rooms.get(conn.channel_id)
        if room is None:
            return
        room.members -= 1
        if room.members > 0:
            return
        async with room.lock:
            if room.members == 0 and room.subscribed:
                room.subscribed = False
                self.states.forget(conn.channel_id)
                try:
                    await self.bus.unsubscribe(conn.channel_id)
                except StoreUnavailable as err:
                    log.warning("unsubscribe %s: %r", conn.channel_id, err)
            if room.members == 0:
                await self.duties.release(conn.channel_id)
                self.hub.drop_room_if_empty(room)

    async def resync(self) -> None:
        """After a bus reconnect: a fresh `hello` to every local watcher, one read per channel."""
        self.hub.stats.resyncs += 1
        for room in list(self.hub.rooms.values()):
            if not room.conns:
                continue
            try:
                state = await self.states.read(room, reuse=False)
            except StoreError as err:
                log.warning("resync of %s failed: %r", room.channel_id, err)
                continue
            room.stream_id = state.stream.stream_id if state.stream else None
            for conn in list(room.conns):
                conn.stream_id = room.stream_id
                self.hub.send(conn, "hello", self.ops.hello(conn, state))

    def _bus_reconnected(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
        self._resync = self.spawn(self.resync(), "resync")

    # --- ChannelEvents (REST handlers, after their commit) -------------------------------

    async def viewers_changed(self, channel_id: str) -> None:
        """Nothing to send now: the lease holder reads the exact count every viewer_interval."""
        self.cache.viewers_changed(channel_id)
        self.duties.nudge(channel_id)

    async def stream_changed(self, channel_id: str) -> None:
        self.cache.stream_changed(channel_id)
        await self._guard(self.origin.stream(channel_id), "stream_changed", channel_id)

    async def schedule_changed(self, channel_id: str) -> None:
        self.cache.schedule_changed(channel_id)
        await self._guard(self.origin.epg(channel_id, force=True), "schedule_changed", channel_id)
        self.duties.schedule_changed(channel_id)

    async def session_ended(
        self, channel_id: str, session_id: str, reason: SessionEndReason
    ) -> None:
        conn = self.hub.sessions.get(session_id)
        if conn is not None:
            self.ops.end(conn, "ended", reason)
            return
        event = SessionEvent(state="ended", reason=reason)
        await self._guard(
            self.origin.control(channel_id, Kind.SESSION_ENDED, session_id, event),
            "session_ended",
            channel_id,
        )

    async def session_quality_changed(self, channel_id: str, session_id: str) -> None:
        conn = self.hub.sessions.get(session_id)
        if conn is not None:
            await self.ops.quality_changed(conn)
            return
        await self._guard(
            self.origin.control(channel_id, Kind.QUALITY_CHANGED, session_id),
            "session_quality_changed",
            channel_id,
        )

    async def tokens_rotated(self, channel_id: str) -> None:
        """The stream signing key changed: every watcher of the channel gets a new token."""
        await self._guard(
            self.origin.control(channel_id, Kind.TOKENS, None), "tokens_rotated", channel_id
        )

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, Any], what: str, channel_id: str) -> None:
        """REST already committed: a failure to notify is logged, not turned into a 5xx."""
        try:
            await coro
        except StoreError as err:
            log.warning("%s(%s) not published: %r", what, channel_id, err)


def _instance_id(settings: Settings) -> str:
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def build(settings: Settings, pool: asyncpg.Pool, *, signer: StreamSigner) -> Realtime:
    """Redis-backed when `redis_url` is set, otherwise in-process."""
    instance_id = _instance_id(settings)
    if settings.redis_url:
        keys = Keys(settings.redis_prefix)
        redis = make_redis(settings.redis_url, cluster=settings.redis_cluster)
        bus: Bus = RedisBus(settings.redis_url, keys, redis=redis, cluster=settings.redis_cluster)
        return Realtime(
            settings,
            pool,
            bus,
            RedisSequencer(redis, keys),
            RedisLeases(redis, keys),
            instance_id,
            signer=signer,
            presence=RedisPresence(redis, keys),
            redis=redis,
        )
    return Realtime(
        settings,
        pool,
        LocalBus(),
        LocalSequencer(),
        LocalLeases(),
        instance_id,
        signer=signer,
        presence=LocalPresence(),
    )
