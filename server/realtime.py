"""The real-time layer: the websocket endpoint, the hub, the bus, and where events originate.

`setup(app)` registers `GET /creators/{creator_id}/channel/live/ws` and one
cleanup_ctx that starts (in order) the bus, the lease duties and the session
keeper, and installs `Realtime` as `app[EVENTS]`, the `ChannelEvents` that
REST handlers notify. `on_shutdown` drains: every socket is closed with 1012,
leases are released.

Where events come from (each originates once, then reaches every instance
through the bus, including this one):

- `stream` (go-live, offline, health/title) and `epg` on a schedule edit:
  the instance that handled the admin request, right after its commit.
- `viewers` and `epg` at program boundaries: the holder of the channel's
  lease (server.timers.ChannelDuties).
- Per-session messages (`token`, `session`) are built where the socket lives;
  a REST request handled elsewhere reaches it as a bus message for the session.

With no Redis URL the bus, sequence and leases are in-process, same code paths.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec
from aiohttp import web

from protocol import bus as wire
from protocol.bus import Envelope, EpgEvent, Kind, SessionEvent
from protocol.epg import EpgNow, Program, current_program, epg_now, next_program
from protocol.errors import ApiError, CloseCode
from protocol.format import UnknownTimezone
from protocol.messages import (
    ClientMessage,
    Error,
    Hello,
    HelloSession,
    HelloStream,
    Playback,
    QualityRequest,
    Resume,
    SessionState,
    StreamStatus,
    Token,
    TokenInfo,
    decode_client,
    encode_server,
    epg_message,
    viewer_numbers,
    viewers_message,
)
from protocol.urls import stream_url
from server.app import CACHE, EVENTS, POOL, SETTINGS
from server.cache import ChannelCache
from server.config import Settings
from server.conn import Conn
from server.hub import Hub, Room, text_frame
from server.signing import StreamSigner
from server.timers import ChannelDuties, Liveness, SessionKeeper, TokenClock
from store.bus import Bus, RedisBus, make_redis
from store.bus_local import LocalBus
from store.channels import Stream, get_live_stream, programs_between
from store.errors import StoreError, StoreUnavailable
from store.keys import Keys
from store.lease import (
    Leases,
    LocalLeases,
    LocalSequencer,
    Position,
    RedisLeases,
    RedisSequencer,
    Sequencer,
)
from store.presence import ViewerCounts, viewer_counts
from store.sessions import get_session, update_quality

log = logging.getLogger(__name__)

__all__ = ["REALTIME", "Realtime", "setup"]

# The schedule window read for current/next: long programs and a day of look-ahead.
EPG_BEHIND: Final = timedelta(hours=24)
EPG_AHEAD: Final = timedelta(hours=48)
# A snapshot is rebuilt if a channel event slipped in while it was read (bounded).
SNAPSHOT_ATTEMPTS: Final = 3
# The token clock's slot: refreshes are due at most this early (never late).
TOKEN_SLOT_MAX: Final = 1.0

_stream_status: Final = msgspec.json.Decoder(StreamStatus)
_session_event: Final = msgspec.json.Decoder(SessionEvent)
_epg_event: Final = msgspec.json.Decoder(EpgEvent)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What every `hello` of one channel shares, read after the position (epoch, seq).

    `taken` is the loop time it was read at: a snapshot is reused for another
    `hello` only at the same position and within `viewer_interval` of it.
    """

    epoch: str
    seq: int
    stream: Stream | None
    counts: ViewerCounts
    programs: list[Program]
    taken: float


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
        redis: Any | None = None,
        cache: ChannelCache | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis  # the command client, closed last
        self.pool = pool
        # The REST read cache this layer keeps honest (see server.cache).
        self.cache = cache or ChannelCache(
            pool, max_age=settings.viewer_interval, session_ttl=settings.session_ttl
        )
        self.bus = bus
        self.sequencer = sequencer
        self.leases = leases
        self.instance_id = instance_id
        self.signer = StreamSigner(pool, settings.signing_key, ttl=settings.stream_token_ttl)
        # A socket that does not take its close frame within a ping interval is gone.
        self.hub = Hub(
            soft_limit=settings.ws_soft_limit,
            hard_limit=settings.ws_hard_limit,
            close_timeout=max(1.0, settings.ping_interval),
        )
        self.duties = ChannelDuties(self)
        self.keeper = SessionKeeper(self)
        self.liveness = Liveness(self.hub, settings.ping_interval)
        self.tokens = TokenClock(
            self.hub,
            self.refresh_token,
            granularity=min(TOKEN_SLOT_MAX, settings.stream_token_ttl / 20),
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        # The last snapshot read per channel with local watchers (see `snapshot`).
        self._snapshots: dict[str, Snapshot] = {}
        self._resync: asyncio.Task[None] | None = None
        self._loops: list[asyncio.Task[None]] = []

    # --- what metrics read ---------------------------------------------------------------
    # hub.sockets_open, hub.stats (sent/skipped per type, slow_closes, closed by code,
    # client_messages, published, publish_failures, resyncs, fanout histogram with
    # observer hooks) and bus_reconnects: plain numbers, read at scrape time.

    @property
    def bus_reconnects(self) -> int:
        return self.bus.reconnects

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start(self._deliver, self._bus_reconnected)
        self._loops = [
            asyncio.create_task(self.duties.run(), name="channel-duties"),
            asyncio.create_task(self.keeper.run(), name="session-keeper"),
            asyncio.create_task(self.liveness.run(), name="liveness"),
        ]

    async def drain(self) -> None:
        """SIGTERM: refuse new sockets, close all with 1012, hand leases over at once."""
        await self.hub.drain(CloseCode.DRAINING)
        await self.duties.release_all()

    async def stop(self) -> None:
        """Cancel loops and spawned work, then close the bus. Safe after `drain` or without it."""
        tasks = [*self._loops, *self._tasks, *([self._resync] if self._resync else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tokens.close()
        try:
            await self.hub.wait_closed()
            await self.duties.release_all()
            await self.bus.close()
        finally:
            if self.redis is not None:
                await self.redis.aclose()

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
        snap = await self.snapshot(room)
        # From here to the hello nothing awaits: no channel event can slip in between.
        previous = self.hub.attach(conn)
        if previous is not None:
            self.end_conn(previous, "replaced", "connected again")
        room.stream_id = snap.stream.stream_id if snap.stream else None
        conn.stream_id = room.stream_id
        self.hub.send(conn, "hello", self.hello(conn, snap))
        if previous is None and held_elsewhere:
            # The session may still have a socket on another instance: replace it there.
            await self._publish_control(
                conn.channel_id,
                Kind.SESSION_ENDED,
                conn.session_id,
                SessionEvent(state="replaced", reason="connected again", keep=conn.conn_id),
            )

    async def leave(self, conn: Conn) -> None:
        """Forget the socket; unsubscribe and give up the lease after the channel's last watcher."""
        self.hub.detach(conn)
        room = self.hub.rooms.get(conn.channel_id)
        if room is None:
            return
        room.members -= 1
        if room.members > 0:
            return
        async with room.lock:
            if room.members == 0 and room.subscribed:
                room.subscribed = False
                # Events stop arriving: the last snapshot cannot be kept current any more.
                self._snapshots.pop(conn.channel_id, None)
                try:
                    await self.bus.unsubscribe(conn.channel_id)
                except StoreUnavailable as err:
                    log.warning("unsubscribe %s: %r", conn.channel_id, err)
            if room.members == 0:
                await self.duties.release(conn.channel_id)
                self.hub.drop_room_if_empty(room)

    # --- snapshots -----------------------------------------------------------------------

    async def snapshot(self, room: Room, *, reuse: bool = True) -> Snapshot:
        """Position first, then state: every event up to the position is in the state read.

        Rebuilt (a few times at most) if a newer event of the same epoch arrived
        meanwhile. With `reuse`, the channel's last snapshot serves again when it is
        at most `viewer_interval` old (so are its counts) and no channel event came
        after its position: either the room, subscribed all along, has received
        none since (no I/O at all), or the sequencer is still there (one Redis
        read). Stream and schedule change only with an event. Concurrent joins of
        a channel wait for one read instead of each reading, so a burst of
        connects reads PostgreSQL once per channel per interval. The cache is
        dropped when the room unsubscribes; a bus reconnect re-reads (`resync`).
        """
        channel = room.channel_id
        if reuse and room.subscribed:
            # Nothing arrived on the bus since the last snapshot was read: it is still the
            # channel's state as of the room's position, and any event after that position
            # is still on its way here, so the socket gets it after its hello.
            cached = self._reusable(channel, Position(room.epoch, room.seq))
            if cached is not None:
                return cached
        for _ in range(SNAPSHOT_ATTEMPTS):
            try:
                pos = await self.sequencer.current(channel)
            except StoreUnavailable as err:
                # Redis is down: use what this instance knows; a fresh hello follows the reconnect.
                log.warning("sequence of %s unavailable: %r", channel, err)
                pos = Position(room.epoch, room.seq)
                snap = await self._read_snapshot(channel, pos)
            else:
                room.position(pos.epoch, pos.seq)
                snap = await self._snapshot_at(room, pos, reuse=reuse)
            if not (room.epoch == pos.epoch and room.seq > pos.seq):
                break
        return snap

    async def _snapshot_at(self, room: Room, pos: Position, *, reuse: bool) -> Snapshot:
        """The snapshot at `pos`: the kept one if allowed and still good, else one read that
        concurrent joins of the channel share (and that is kept for the next ones)."""
        channel = room.channel_id
        if reuse and (cached := self._reusable(channel, pos)) is not None:
            return cached
        async with room.reading:
            if reuse and (cached := self._reusable(channel, pos)) is not None:
                return cached
            snap = self._snapshots[channel] = await self._read_snapshot(channel, pos)
            return snap

    def _reusable(self, channel: str, pos: Position) -> Snapshot | None:
        snap = self._snapshots.get(channel)
        if (
            snap is not None
            and snap.seq == pos.seq
            and snap.epoch == pos.epoch
            and asyncio.get_running_loop().time() - snap.taken <= self.settings.viewer_interval
        ):
            return snap
        return None

    async def _read_snapshot(self, channel: str, pos: Position) -> Snapshot:
        taken = asyncio.get_running_loop().time()
        now = datetime.now(UTC)
        stream, counts, programs = await asyncio.gather(
            get_live_stream(self.pool, channel),
            viewer_counts(self.pool, channel, ttl=self.settings.session_ttl),
            programs_between(self.pool, channel, now - EPG_BEHIND, now + EPG_AHEAD),
        )
        return Snapshot(
            epoch=pos.epoch,
            seq=pos.seq,
            stream=stream,
            counts=counts,
            programs=programs,
            taken=taken,
        )

    def hello(self, conn: Conn, snap: Snapshot) -> bytes:
        """Encode the full snapshot for one socket and remember its position."""
        stream = snap.stream
        token = self.token_info(conn) if stream is not None else None
        msg = Hello(
            epoch=snap.epoch,
            seq=snap.seq,
            ts=time.time(),
            session=HelloSession(
                session_id=conn.session_id,
                started_at=conn.started_at,
                expires_at=conn.expires_at,
                device_type=conn.device_type,
                quality=conn.quality,
                timezone=conn.timezone,
            ),
            stream=HelloStream(
                stream_id=stream.stream_id,
                is_live=stream.is_live,
                health=stream.health,
                title=stream.title,
                started_at=stream.started_at,
                latency_mode=stream.latency_mode,
            )
            if stream is not None
            else None,
            viewers=viewer_numbers(snap.counts.watching_now, 0, snap.counts.peak_today),
            epg=self._epg(snap.programs, datetime.now(UTC), conn.timezone),
            token=token,
            ping_interval=self.settings.ping_interval,
        )
        conn.hello_epoch, conn.hello_seq = snap.epoch, snap.seq
        return encode_server(msg)

    @staticmethod
    def _epg(programs: list[Program], now: datetime, tz: str) -> EpgNow:
        try:
            return epg_now(programs, now, tz)
        except UnknownTimezone:
            return epg_now(programs, now, "UTC")

    async def resync(self) -> None:
        """After a bus reconnect: a fresh `hello` to every local watcher, one snapshot per channel."""
        self.hub.stats.resyncs += 1
        for room in list(self.hub.rooms.values()):
            if not room.conns:
                continue
            try:
                snap = await self.snapshot(room, reuse=False)
            except StoreError as err:
                log.warning("resync of %s failed: %r", room.channel_id, err)
                continue
            room.stream_id = snap.stream.stream_id if snap.stream else None
            for conn in list(room.conns):
                conn.stream_id = room.stream_id
                self.hub.send(conn, "hello", self.hello(conn, snap))

    def _bus_reconnected(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
        self._resync = asyncio.get_running_loop().create_task(self.resync(), name="resync")

    # --- stream tokens -------------------------------------------------------------------

    def token_info(self, conn: Conn) -> TokenInfo | None:
        """A new stream token for the socket (None while offline); re-arms its refresh.

        Minted on every call rather than kept: a Conn holds no token string (memory per
        socket), and the calls are the `hello`, a refresh, a quality or stream change.
        """
        if conn.stream_id is None:
            return None
        now = time.time()
        minted = self.signer.mint(
            conn.channel_id,
            self.signer.cached_version(conn.channel_id),
            stream_id=conn.stream_id,
            session_id=conn.session_id,
            user_id=conn.user_id,
            quality=conn.quality,
            now=now,
        )
        conn.token_issued_at = now
        conn.token_expires_at = minted.expires_at.timestamp()
        self.tokens.arm(conn)
        return TokenInfo(
            token=minted.token,
            token_expires_at=minted.expires_at,
            stream_url=stream_url(self.settings.cdn_base_url, conn.stream_id, conn.quality),
            quality=conn.quality,
        )

    def send_token(self, conn: Conn, reason: str) -> bool:
        info = self.token_info(conn)
        if info is None:
            return False
        room = self.hub.rooms.get(conn.channel_id)
        msg = Token(
            epoch=room.epoch if room else "",
            seq=room.seq if room else 0,
            ts=time.time(),
            token=info.token,
            token_expires_at=info.token_expires_at,
            stream_url=info.stream_url,
            quality=info.quality,
            reason=reason,
        )
        return self.hub.send(conn, "token", encode_server(msg))

    def refresh_token(self, conn: Conn) -> None:
        """Token clock callback at 80 % of the token's life (runs in the loop, no task)."""
        if not conn.closing:
            self.send_token(conn, "refresh")

    # --- ending sessions -----------------------------------------------------------------

    def end_conn(self, conn: Conn, state: str, reason: str) -> None:
        """Tell the socket its session is over (`session`), then close it with 4009."""
        if conn.closing:
            return
        room = self.hub.rooms.get(conn.channel_id)
        msg = SessionState(
            epoch=room.epoch if room else "",
            seq=room.seq if room else 0,
            ts=time.time(),
            session_id=conn.session_id,
            state=state,
            reason=reason,
        )
        self.hub.send(conn, "session", encode_server(msg))
        self.hub.close(conn, CloseCode.SESSION_ENDED, f"session {state}: {reason}")

    # --- client messages -----------------------------------------------------------------

    def client_error(self, conn: Conn, code: int, message: str, field: str | None = None) -> None:
        self.hub.stats.client_messages["invalid"] += 1
        room = self.hub.rooms.get(conn.channel_id)
        msg = Error(
            epoch=room.epoch if room else "",
            seq=room.seq if room else 0,
            ts=time.time(),
            code=code,
            message=message,
            field=field,
        )
        self.hub.send(conn, "error", encode_server(msg))

    async def on_text(self, conn: Conn, data: str) -> None:
        """Handle one client frame; a bad one is answered with `error`, never a close.

        Each socket has a message budget (a token bucket): past it the frame is
        answered `error` 429 unread, and a socket that keeps sending after
        `ws_message_burst` refusals in a row is closed with 4029, so a flooding
        client costs the others one refused frame, not a database write.
        """
        settings = self.settings
        if not conn.spend(
            asyncio.get_running_loop().time(), settings.ws_message_rate, settings.ws_message_burst
        ):
            if conn.refused > settings.ws_message_burst:
                self.hub.close(conn, CloseCode.RATE_LIMITED, "too many messages")
            else:
                self.client_error(conn, 429, "Too many messages: slow down", "type")
            return
        try:
            msg: ClientMessage = decode_client(data)
        except ApiError as err:
            self.client_error(conn, err.status, err.message, err.field)
            return
        try:
            await self._client_message(conn, msg)
        except StoreError as err:
            log.warning("client message of %s failed: %s", conn.session_id, err.message)
            self.client_error(conn, 503, "Temporarily unavailable: retry shortly", None)

    async def _client_message(self, conn: Conn, msg: ClientMessage) -> None:
        self.hub.stats.client_messages[type(msg).__struct_config__.tag] += 1  # type: ignore[index]
        match msg:
            case QualityRequest(quality=quality):
                await self.change_quality(conn, quality.value)
            case Resume(epoch=epoch, last_seq=last_seq):
                await self.resume(conn, epoch, last_seq)
            case Playback():
                pass  # counted above; analytics endpoints store player events

    async def change_quality(self, conn: Conn, quality: str) -> None:
        session = await update_quality(self.pool, conn.session_id, quality)
        if session is None:
            ended = await get_session(self.pool, conn.session_id)
            reason = (ended.end_reason if ended else None) or "expired"
            self.end_conn(conn, "ended" if ended and ended.ended_at else "expired", reason)
            return
        conn.quality = session.quality
        if not self.send_token(conn, "quality"):
            self.client_error(conn, 409, "The channel is offline: no stream to play", "quality")

    async def resume(self, conn: Conn, epoch: str, last_seq: int) -> None:
        """`hello` unless the client is exactly at this instance's latest position."""
        room = self.hub.rooms.get(conn.channel_id)
        if room is None:
            return
        if epoch == room.epoch and last_seq == room.seq and room.epoch:
            return
        snap = await self.snapshot(room)
        if not conn.closing:
            self.hub.send(conn, "hello", self.hello(conn, snap))

    # --- originating events --------------------------------------------------------------

    async def _publish(self, channel: str, envelope: Envelope, payload: bytes) -> None:
        try:
            await self.bus.publish(channel, wire.pack(envelope, payload))
        except StoreUnavailable as err:
            self.hub.stats.publish_failures += 1
            log.warning("publish %s on %s failed: %r", envelope.type, channel, err)
            return
        self.hub.stats.published[envelope.type] += 1

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
            instance_id=self.instance_id,
            ts=ts,
            target=target,
        )

    async def publish_stream(self, channel: str) -> None:
        stream = await get_live_stream(self.pool, channel)
        pos = await self.sequencer.next(channel)
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

    async def publish_viewers(self, channel: str) -> bool:
        """The holder's tick: publish the exact count if it changed since the last `viewers`."""
        counts = await viewer_counts(self.pool, channel, ttl=self.settings.session_ttl)
        change = await self.sequencer.next_if_changed(
            channel, "viewers", f"{counts.watching_now},{counts.peak_today}"
        )
        if change is None:
            return False
        ts = time.time()
        previous = int(change.previous.split(",")[0]) if change.previous else counts.watching_now
        numbers = viewer_numbers(
            counts.watching_now, counts.watching_now - previous, counts.peak_today
        )
        msg = viewers_message(change.epoch, change.seq, ts, numbers)
        pos = Position(change.epoch, change.seq)
        await self._publish(
            channel, self._envelope(channel, Kind.BROADCAST, "viewers", pos, ts), encode_server(msg)
        )
        return True

    async def publish_epg(
        self, channel: str, *, at: datetime | None = None, force: bool = False
    ) -> bool:
        """Current and next program at `at` (default now); unless `force`, only if they changed."""
        now = at or datetime.now(UTC)
        programs = await programs_between(self.pool, channel, now - EPG_BEHIND, now + EPG_AHEAD)
        current, upcoming = current_program(programs, now), next_program(programs, now)
        if force:
            pos = await self.sequencer.next(channel)
        else:
            key = (
                f"{current.program_id if current else ''}|{upcoming.program_id if upcoming else ''}"
            )
            change = await self.sequencer.next_if_changed(channel, "epg", key)
            if change is None:
                return False
            pos = Position(change.epoch, change.seq)
        event = EpgEvent(programs=[p for p in (current, upcoming) if p is not None])
        envelope = self._envelope(channel, Kind.EPG, "epg", pos, now.timestamp())
        await self._publish(channel, envelope, msgspec.json.encode(event))
        return True

    async def _publish_control(
        self, channel: str, kind: Kind, target: str | None, event: msgspec.Struct | None = None
    ) -> None:
        payload = msgspec.json.encode(event) if event is not None else b""
        await self._publish(
            channel, self._envelope(channel, kind, kind.value, None, time.time(), target), payload
        )

    # --- receiving from the bus ----------------------------------------------------------

    def _deliver(self, channel: str, data: bytes) -> None:
        """Bus callback, in the bus reader: fan out now; slower work goes to a task.

        A failure here is logged and the message dropped: it must not look like a
        broken Redis link to the reader (which would reconnect and resync everyone).
        """
        try:
            self._dispatch(channel, data)
        except (wire.MalformedBusMessage, msgspec.DecodeError) as err:
            log.warning("dropping malformed bus message on %s: %s", channel, err)
        except Exception:
            log.exception("delivering a bus message on %s failed", channel)

    def _dispatch(self, channel: str, data: bytes) -> None:
        env, payload = wire.unpack(data)
        room = self.hub.rooms.get(channel)
        if room is None:
            return
        match env.kind:
            case Kind.BROADCAST:
                self.hub.broadcast(
                    room, env.type, env.epoch, env.seq, env.ts, frame=text_frame(payload)
                )
                if env.type == "viewers":
                    self.cache.viewers_changed(channel)
                elif env.type == "stream":
                    self.cache.stream_changed(channel)
                    self._stream_changed_here(room, _stream_status.decode(payload))
            case Kind.EPG:
                programs = _epg_event.decode(payload).programs
                at = _utc(env.ts)

                def render(tz: str) -> bytes:
                    epg = self._epg(programs, at, tz)
                    return text_frame(encode_server(epg_message(env.epoch, env.seq, env.ts, epg)))

                self.hub.broadcast(room, "epg", env.epoch, env.seq, env.ts, render=render)
                self.cache.schedule_changed(channel)
                if env.instance_id != self.instance_id:
                    self.duties.schedule_changed(channel)
            case Kind.SESSION_ENDED:
                conn = self.hub.sessions.get(env.target or "")
                event = _session_event.decode(payload)
                if conn is not None and conn.conn_id != event.keep:
                    self.end_conn(conn, event.state, event.reason)
            case Kind.QUALITY_CHANGED:
                conn = self.hub.sessions.get(env.target or "")
                if conn is not None:
                    self.spawn(self._quality_changed_here(conn), "quality-changed")
            case Kind.TOKENS:
                self.spawn(self._rotated_here(room), "tokens-rotated")

    async def _rotated_here(self, room: Room) -> None:
        """Read the channel's new key version, then give every local watcher a token signed with it."""
        self.signer.forget(room.channel_id)
        await self.signer.version(room.channel_id)
        for conn in list(room.conns):
            self.send_token(conn, "rotation")

    def _stream_changed_here(self, room: Room, status: StreamStatus) -> None:
        """Offline ends every local session of the channel; a new live stream needs new tokens."""
        if not status.is_live:
            room.stream_id = None
            for conn in list(room.conns):
                self.end_conn(conn, "ended", "stream_offline")
        elif status.stream_id != room.stream_id:
            room.stream_id = status.stream_id
            for conn in list(room.conns):
                conn.stream_id = status.stream_id
                self.send_token(conn, "stream")

    async def _quality_changed_here(self, conn: Conn) -> None:
        session = await get_session(self.pool, conn.session_id)
        if session is None or conn.closing:
            return
        conn.quality = session.quality
        self.send_token(conn, "quality")

    # --- ChannelEvents (REST handlers, after their commit) -------------------------------

    async def viewers_changed(self, channel_id: str) -> None:
        """Nothing to send now: the lease holder reads the exact count every viewer_interval."""
        self.cache.viewers_changed(channel_id)
        self.duties.nudge(channel_id)

    async def stream_changed(self, channel_id: str) -> None:
        self.cache.stream_changed(channel_id)
        await self._guard(self.publish_stream(channel_id), "stream_changed", channel_id)

    async def schedule_changed(self, channel_id: str) -> None:
        self.cache.schedule_changed(channel_id)
        await self._guard(self.publish_epg(channel_id, force=True), "schedule_changed", channel_id)
        self.duties.schedule_changed(channel_id)

    async def session_ended(self, channel_id: str, session_id: str, reason: str) -> None:
        conn = self.hub.sessions.get(session_id)
        if conn is not None:
            self.end_conn(conn, "ended", reason)
            return
        await self._guard(
            self._publish_control(
                channel_id,
                Kind.SESSION_ENDED,
                session_id,
                SessionEvent(state="ended", reason=reason),
            ),
            "session_ended",
            channel_id,
        )

    async def session_quality_changed(self, channel_id: str, session_id: str) -> None:
        conn = self.hub.sessions.get(session_id)
        if conn is not None:
            await self._quality_changed_here(conn)
            return
        await self._guard(
            self._publish_control(channel_id, Kind.QUALITY_CHANGED, session_id),
            "session_quality_changed",
            channel_id,
        )

    async def tokens_rotated(self, channel_id: str) -> None:
        """The stream signing key changed: every watcher of the channel gets a new token."""
        await self._guard(
            self._publish_control(channel_id, Kind.TOKENS, None), "tokens_rotated", channel_id
        )

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, Any], what: str, channel_id: str) -> None:
        """REST already committed: a failure to notify is logged, not turned into a 5xx."""
        try:
            await coro
        except StoreError as err:
            log.warning("%s(%s) not published: %r", what, channel_id, err)


# --- wiring ----------------------------------------------------------------------------------

REALTIME: Final = web.AppKey("realtime", Realtime)


def _instance_id(settings: Settings) -> str:
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def build(settings: Settings, pool: asyncpg.Pool, cache: ChannelCache | None = None) -> Realtime:
    """Redis-backed when `redis_url` is set, otherwise in-process."""
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
            _instance_id(settings),
            redis=redis,
            cache=cache,
        )
    return Realtime(
        settings,
        pool,
        LocalBus(),
        LocalSequencer(),
        LocalLeases(),
        _instance_id(settings),
        cache=cache,
    )


async def _realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = build(app[SETTINGS], app[POOL], app[CACHE])
    try:
        await rt.start()
    except BaseException:
        await rt.stop()
        raise
    app[REALTIME] = rt
    app[EVENTS] = rt
    try:
        yield
    finally:
        await rt.stop()


async def _on_shutdown(app: web.Application) -> None:
    rt = app.get(REALTIME)
    if rt is not None:
        await rt.drain()


def setup(app: web.Application) -> None:
    """Register the websocket route, the real-time resources and the drain on shutdown."""
    from server import ws

    app.router.add_get("/creators/{creator_id}/channel/live/ws", ws.handle)
    app.cleanup_ctx.append(_realtime_ctx)
    app.on_shutdown.append(_on_shutdown)
