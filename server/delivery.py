"""What arrives from the bus and how it reaches local sockets.

`Delivery.deliver` is the bus reader's callback, run in the reader: a
channel event is wrapped in one websocket frame and written to every local
socket of the channel by the hub (the same bytes object to each), `epg` is
rendered once per time zone present, and control messages act on the one
socket they target. Work that needs I/O (re-reading a session or a key
version) goes to a task; nothing here awaits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import msgspec

from protocol import bus as wire
from protocol.bus import EpgEvent, Kind, SessionEvent
from protocol.messages import StreamStatus, encode_server, epg_message
from server.cache import ChannelCache
from server.channel_state import epg_for
from server.frames import text_frame
from server.hub import Hub, Room
from server.session_ops import SessionOps
from server.signing import StreamSigner
from server.timers import Spawn

log = logging.getLogger(__name__)

__all__ = ["Delivery"]

_stream_status: Final = msgspec.json.Decoder(StreamStatus)
_session_event: Final = msgspec.json.Decoder(SessionEvent)
_epg_event: Final = msgspec.json.Decoder(EpgEvent)


class Delivery:
    """Delivers bus messages to this instance's sockets (see the module doc)."""

    def __init__(
        self,
        hub: Hub,
        ops: SessionOps,
        cache: ChannelCache,
        signer: StreamSigner,
        spawn: Spawn,
        *,
        instance_id: str,
        schedule_changed: Callable[[str], None],
    ) -> None:
        self._hub = hub
        self._ops = ops
        self._cache = cache
        self._signer = signer
        self._spawn = spawn
        self._instance_id = instance_id
        # Tells the channel's lease duties that another instance edited the schedule.
        self._schedule_changed = schedule_changed

    def deliver(self, channel: str, data: bytes) -> None:
        """Bus callback: fan out now. A failure is logged and the message dropped: it must
        not look like a broken Redis link to the reader (which would resync everyone)."""
        try:
            self._dispatch(channel, data)
        except (wire.MalformedBusMessage, msgspec.DecodeError) as err:
            log.warning("dropping malformed bus message on %s: %s", channel, err)
        except Exception:
            log.exception("delivering a bus message on %s failed", channel)

    def _dispatch(self, channel: str, data: bytes) -> None:
        env, payload = wire.unpack(data)
        room = self._hub.rooms.get(channel)
        if room is None:
            return
        match env.kind:
            case Kind.BROADCAST:
                self._hub.broadcast(
                    room, env.type, env.epoch, env.seq, env.ts, frame=text_frame(payload)
                )
                if env.type == "viewers":
                    self._cache.viewers_changed(channel)
                elif env.type == "stream":
                    self._cache.stream_changed(channel)
                    self._stream_changed(room, _stream_status.decode(payload))
            case Kind.EPG:
                programs = _epg_event.decode(payload).programs
                at = datetime.fromtimestamp(env.ts, UTC)

                def render(tz: str) -> bytes:
                    epg = epg_for(programs, at, tz)
                    return text_frame(encode_server(epg_message(env.epoch, env.seq, env.ts, epg)))

                self._hub.broadcast(room, "epg", env.epoch, env.seq, env.ts, render=render)
                self._cache.schedule_changed(channel)
                if env.instance_id != self._instance_id:
                    self._schedule_changed(channel)
            case Kind.SESSION_ENDED:
                conn = self._hub.sessions.get(env.target or "")
                event = _session_event.decode(payload)
                if conn is not None and conn.conn_id != event.keep:
                    self._ops.end(conn, event.state, event.reason)
            case Kind.QUALITY_CHANGED:
                conn = self._hub.sessions.get(env.target or "")
                if conn is not None:
                    self._spawn(self._ops.quality_changed(conn), "quality-changed")
            case Kind.TOKENS:
                self._spawn(self._rotated(room), "tokens-rotated")

    async def _rotated(self, room: Room) -> None:
        """Read the channel's new key version, then give every local watcher a token signed with it."""
        self._signer.forget(room.channel_id)
        await self._signer.version(room.channel_id)
        for conn in list(room.conns):
            self._ops.send_token(conn, "rotation")

    def _stream_changed(self, room: Room, status: StreamStatus) -> None:
        """Offline ends every local session of the channel; a new live stream needs new tokens."""
        if not status.is_live:
            room.stream_id = None
            for conn in list(room.conns):
                self._ops.end(conn, "ended", "stream_offline")
        elif status.stream_id != room.stream_id:
            room.stream_id = status.stream_id
            for conn in list(room.conns):
                conn.stream_id = status.stream_id
                self._ops.send_token(conn, "stream")
