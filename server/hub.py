"""The hub owns this instance's websockets: who watches which channel, and writing to them.

Fan-out. A channel event arrives once per instance (from the bus) already
encoded; the hub wraps it in one websocket frame (unmasked text frame, no
compression: none is negotiated) and `transport.write`s the same bytes
object to every local socket of the channel. No task, queue or copy per
socket per message: the per-socket cost is a buffer-size read, a compare and
a write. `epg` differs by the watcher's time zone (`start_time_formatted`),
so it is rendered once per zone present, not once per socket.

Slow consumers. Before each write the hub reads the socket's unsent bytes
(`transport.get_write_buffer_size()`): past `ws_soft_limit`, latest-value
messages (`viewers`) are skipped for it (counted); when a write would take
it past `ws_hard_limit` it is closed with 4008 and nothing more is written,
so memory per socket stays below the hard limit whatever the client does.
A close that cannot be delivered (the client does not read) is given
`close_timeout` seconds, then the transport is aborted.

Ordering. Channel events of one epoch are delivered in seq order per type:
an event older than one of the same type already delivered (two instances
published at the same moment) is dropped, which is safe because every
channel event is a snapshot of state, not a delta to apply. A socket does not
get channel events its `hello` already reflects (seq <= hello seq).

Liveness. `sweep` (run by server.timers.Liveness) writes the same pre-built
ping frame to every socket that has been silent for a ping interval, and
aborts one that stays silent half an interval after its ping: one timer for
the hub instead of aiohttp's two handles per socket.

Counters for metrics are in `Hub.stats`; reading them needs no lock (one thread).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from protocol.errors import CloseCode
from protocol.messages import LATEST_VALUE_TYPES
from server.conn import Conn
from server.frames import PING_FRAME, Audience, Queued, join_events, text_frame
from server.hub_stats import HubStats

log = logging.getLogger(__name__)

__all__ = ["Hub", "Room", "text_frame"]


class Room:
    """The local watchers of one channel and the channel's position as seen here."""

    __slots__ = (
        "channel_id",
        "conns",
        "devices",
        "epoch",
        "last_by_type",
        "lock",
        "members",
        "queued",
        "reading",
        "seq",
        "stream_id",
        "subscribed",
    )

    def __init__(self, channel_id: str) -> None:
        self.channel_id = channel_id
        self.conns: set[Conn] = set()
        # Sockets per device type, kept with `conns`: this instance's presence share.
        self.devices: Counter[str] = Counter()
        self.epoch = ""
        self.seq = 0
        self.last_by_type: dict[str, int] = {}
        # Channel events waiting for this loop turn's flush (Hub.broadcast / Hub.flush).
        self.queued: list[Queued] = []
        self.stream_id: str | None = None
        # Serializes bus subscribe/unsubscribe of this channel; `members` counts
        # joins in progress too, so a join racing the last leave keeps the subscription.
        self.lock = asyncio.Lock()
        self.members = 0
        self.subscribed = False
        # Serializes snapshot reads of this channel, so concurrent joins share one.
        self.reading = asyncio.Lock()

    def advance(self, type_: str, epoch: str, seq: int) -> bool:
        """Record a channel event; False if it is older than one of its type already seen."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.seq = 0
            self.last_by_type.clear()
        if seq <= self.last_by_type.get(type_, 0):
            return False
        self.last_by_type[type_] = seq
        self.seq = max(self.seq, seq)
        return True

    def position(self, epoch: str, seq: int) -> None:
        """Adopt a position read from the sequencer (a snapshot), never moving backwards."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.seq = seq
            self.last_by_type.clear()
        else:
            self.seq = max(self.seq, seq)


class Hub:
    def __init__(self, *, soft_limit: int, hard_limit: int, close_timeout: float) -> None:
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self.close_timeout = close_timeout
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[str, Conn] = {}
        self.stats = HubStats()
        self.draining = False
        self._closing: set[asyncio.Task[None]] = set()

    # --- registry ------------------------------------------------------------------------

    @property
    def sockets_open(self) -> int:
        return len(self.sessions)

    def room(self, channel_id: str) -> Room:
        room = self.rooms.get(channel_id)
        if room is None:
            room = self.rooms[channel_id] = Room(channel_id)
        return room

    def attach(self, conn: Conn) -> Conn | None:
        """Register a socket; returns the local socket of the same session it replaces, if any."""
        previous = self.sessions.get(conn.session_id)
        self.sessions[conn.session_id] = conn
        room = self.room(conn.channel_id)
        if conn not in room.conns:
            room.conns.add(conn)
            room.devices[conn.device_type] += 1
        self.stats.opened += 1
        return previous if previous is not conn else None

    def detach(self, conn: Conn) -> None:
        conn.cancel_timers()
        room = self.rooms.get(conn.channel_id)
        if room is not None and conn in room.conns:
            room.conns.discard(conn)
            room.devices[conn.device_type] -= 1
        if self.sessions.get(conn.session_id) is conn:
            del self.sessions[conn.session_id]

    def move_device(self, conn: Conn, device_type: str) -> None:
        """The session moved to another device type (PATCH 34): keep the room's counts right."""
        room = self.rooms.get(conn.channel_id)
        if room is not None and conn in room.conns:
            room.devices[conn.device_type] -= 1
            room.devices[device_type] += 1
        conn.device_type = device_type

    def drop_room_if_empty(self, room: Room) -> bool:
        if room.members == 0 and not room.conns and not room.subscribed:
            if self.rooms.get(room.channel_id) is room:
                del self.rooms[room.channel_id]
            return True
        return False

    # --- writing -------------------------------------------------------------------------

    def broadcast(
        self,
        room: Room,
        type_: str,
        epoch: str,
        seq: int,
        ts: float,
        *,
        frame: bytes | None = None,
        render: Callable[[str], bytes] | None = None,
    ) -> None:
        """Queue one channel event for every local watcher of `room`; written at the end of
        this loop turn together with the room's other queued events (see `flush`).

        Pass the frame, or `render(timezone) -> frame` for zone-dependent events
        (called once per zone present). Stale events (see module doc) are dropped.
        """
        if not room.advance(type_, epoch, seq):
            self.stats.stale_dropped += 1
            return
        room.queued.append((type_, epoch, seq, ts, frame, render))
        if len(room.queued) == 1:
            asyncio.get_running_loop().call_soon(self.flush, room)

    def flush(self, room: Room) -> int:
        """Write the room's queued events: per socket one write of all that apply to it.

        Events that arrived in the same loop turn (the bus reader hands over what
        is buffered without yielding) cost one `transport.write` per socket, not
        one per event. The bytes a socket gets are built once per distinct
        (zone, skip-latest, hello position) among the sockets, so the common
        socket costs a dict lookup, a buffer-size read and a write. Order is the
        events' order; per-socket messages flush the room first (`send`).
        """
        events, room.queued = room.queued, []
        if not events:
            return 0
        soft, hard = self.soft_limit, self.hard_limit
        first_seq = min(e[2] for e in events)
        built: dict[Audience, tuple[bytes, list[str]]] = {}
        by_zone: dict[tuple[int, str], bytes] = {}
        sent: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        slow: list[Conn] = []
        for conn in room.conns:
            if conn.closing:
                continue
            transport = conn.transport
            if transport.is_closing():
                continue
            pending = transport.get_write_buffer_size()
            over_soft = pending > soft
            # Only sockets whose hello came after some queued event need their own filter.
            key: Audience = (
                (conn.timezone, over_soft, conn.hello_seq, conn.hello_epoch)
                if conn.hello_seq >= first_seq
                else (conn.timezone, over_soft, -1, "")
            )
            found = built.get(key)
            if found is None:
                found = built[key] = join_events(events, key, by_zone)
            data, types = found
            if not data:
                continue
            if pending + len(data) > hard:
                slow.append(conn)
                continue
            transport.write(data)
            sent.update(types)
            if over_soft:
                skipped.update(t for t, *_ in events if t in LATEST_VALUE_TYPES)
        for conn in slow:
            self.close_slow(conn)
        stats = self.stats
        stats.sent.update(sent)
        stats.skipped.update(skipped)
        now = time.time()
        for type_, _, _, ts, _, _ in events:
            stats.fanout.observe(type_, now - ts)
        return sum(sent.values())

    def send(self, conn: Conn, type_: str, payload: bytes) -> bool:
        """Write one message to one socket, under the same limits; False if not written.

        Channel events still queued for the socket's room are written first, so
        a socket sees events and its own messages in the order they happened.
        """
        room = self.rooms.get(conn.channel_id)
        if room is not None and room.queued:
            self.flush(room)
        if conn.closing or conn.transport.is_closing():
            return False
        data = text_frame(payload)
        pending = conn.transport.get_write_buffer_size()
        if pending + len(data) > self.hard_limit:
            self.close_slow(conn)
            return False
        if type_ in LATEST_VALUE_TYPES and pending > self.soft_limit:
            self.stats.skipped[type_] += 1
            return False
        conn.transport.write(data)
        self.stats.sent[type_] += 1
        return True

    # --- liveness ------------------------------------------------------------------------

    def sweep(self, now: float, *, idle: float, grace: float) -> int:
        """Ping each socket that received nothing for `idle` seconds; drop each that received
        nothing within `grace` seconds of its ping. Returns the pings written.

        `now` and `conn.last_rx` are on the loop clock; the reader sets `last_rx` on every
        frame, so any frame answers a ping. A dropped socket is aborted (its peer is gone:
        a close frame would only sit in the buffer); its reader then sees the end and leaves.
        """
        dead: list[Conn] = []
        slow: list[Conn] = []
        pinged = 0
        hard = self.hard_limit
        for conn in self.sessions.values():
            if conn.closing:
                continue
            sent = conn.ping_sent
            if sent:
                if conn.last_rx < sent:
                    if now - sent >= grace:
                        dead.append(conn)
                    continue
                conn.ping_sent = 0.0
            if now - conn.last_rx < idle:
                continue
            transport = conn.transport
            if transport.is_closing():
                continue
            if transport.get_write_buffer_size() + len(PING_FRAME) > hard:
                slow.append(conn)
                continue
            transport.write(PING_FRAME)
            conn.ping_sent = now
            pinged += 1
        for conn in slow:
            self.close_slow(conn)
        for conn in dead:
            self.stats.ping_timeouts += 1
            log.info("dropping %s: no answer to a ping", conn.session_id)
            conn.closing = True
            conn.cancel_timers()
            conn.transport.abort()
        return pinged

    # --- closing -------------------------------------------------------------------------

    def close_slow(self, conn: Conn) -> None:
        if not conn.closing:
            self.stats.slow_closes += 1
            log.info(
                "closing slow consumer %s (%d bytes unsent)",
                conn.session_id,
                conn.transport.get_write_buffer_size(),
            )
            self.close(conn, CloseCode.TOO_SLOW, "too slow")

    def close(self, conn: Conn, code: int, reason: str = "") -> None:
        """Start closing a socket with `code`; nothing more is written to it. Idempotent.

        The close frame follows whatever is still buffered. The client gets
        `close_timeout` seconds to take it and answer; then the transport is aborted,
        which frees its buffer even if the client never reads again.
        """
        if conn.closing:
            return
        conn.closing = True
        conn.close_code = code
        conn.cancel_timers()
        self.stats.closed[int(code)] += 1
        task = asyncio.get_running_loop().create_task(self._close(conn, code, reason))
        conn.close_task = task
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, conn: Conn, code: int, reason: str) -> None:
        transport = conn.transport
        deadline = asyncio.get_running_loop().time() + self.close_timeout
        try:
            async with asyncio.timeout_at(deadline):
                await conn.ws.close(code=code, message=reason.encode()[:123], drain=False)
                # aiohttp closed the transport; it still flushes what is buffered
                # (our close frame last), so wait for that, within the deadline.
                while transport.get_write_buffer_size():
                    await asyncio.sleep(0.05)
        except (TimeoutError, ConnectionError, RuntimeError) as err:
            log.debug("close %s of %s ended with %r", code, conn.session_id, err)
        finally:
            if transport.get_write_buffer_size():
                transport.abort()

    async def drain(self, code: int = CloseCode.DRAINING, timeout: float | None = None) -> None:
        """Stop accepting and close every socket with `code`; returns when all are closed."""
        self.draining = True
        for conn in list(self.sessions.values()):
            self.close(conn, code, "instance draining")
        for room in self.rooms.values():
            for conn in list(room.conns):
                self.close(conn, code, "instance draining")
        await self.wait_closed(timeout)

    async def wait_closed(self, timeout: float | None = None) -> None:
        pending = list(self._closing)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=timeout or self.close_timeout + 1)
        for task in still:
            task.cancel()
        # gather(return_exceptions) collects the children's cancellation but still
        # propagates a cancellation of this coroutine.
        await asyncio.gather(*still, return_exceptions=True)
