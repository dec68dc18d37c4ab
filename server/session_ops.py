"""What one socket's session does: its `hello`, stream tokens, client messages and its end.

Everything here writes to one socket through the hub and runs in the loop:
no task per socket. Tokens are minted on demand (a Conn keeps no token
string) and their refresh is filed with the shared `TokenClock`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import asyncpg

from protocol.errors import ApiError, CloseCode
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
    Token,
    TokenInfo,
    decode_client,
    encode_server,
    viewer_numbers,
)
from protocol.urls import stream_url
from protocol.values import SessionCloseReason, SessionEndState, TokenReason
from server.channel_state import ChannelState, ChannelStates, epg_for
from server.config import Settings
from server.conn import Conn
from server.hub import Hub
from server.signing import StreamSigner
from server.timers import TokenClock
from store.errors import StoreError
from store.sessions import get_session, update_quality

log = logging.getLogger(__name__)

__all__ = ["SessionOps"]

# The token clock's slot: refreshes are due at most this early (never late).
TOKEN_SLOT_MAX: Final = 1.0


class SessionOps:
    """Per-socket session operations: hello, token, quality, resume, end, errors."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        hub: Hub,
        signer: StreamSigner,
        states: ChannelStates,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.hub = hub
        self.signer = signer
        self.states = states
        # Told when a socket's session moved to another device type (its room's counts changed).
        self.device_moved: Callable[[str], None] = lambda channel: None
        self.tokens = TokenClock(
            hub,
            self.refresh_token,
            granularity=min(TOKEN_SLOT_MAX, settings.stream_token_ttl / 20),
        )

    def _position(self, conn: Conn) -> tuple[str, int]:
        """The channel position a per-socket message carries: the room's latest."""
        room = self.hub.rooms.get(conn.channel_id)
        return (room.epoch, room.seq) if room else ("", 0)

    # --- hello and tokens ----------------------------------------------------------------

    def hello(self, conn: Conn, state: ChannelState) -> bytes:
        """Encode the full channel state for one socket and remember its position."""
        stream = state.stream
        msg = Hello(
            epoch=state.epoch,
            seq=state.seq,
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
            viewers=viewer_numbers(state.counts.watching_now, 0, state.counts.peak_today),
            epg=epg_for(state.programs, datetime.now(UTC), conn.timezone),
            token=self.token_info(conn) if stream is not None else None,
            ping_interval=self.settings.ping_interval,
        )
        conn.hello_epoch, conn.hello_seq = state.epoch, state.seq
        return encode_server(msg)

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

    def send_token(self, conn: Conn, reason: TokenReason) -> bool:
        """Write a `token` message; False (nothing sent) while the channel is offline."""
        info = self.token_info(conn)
        if info is None:
            return False
        epoch, seq = self._position(conn)
        msg = Token(
            epoch=epoch,
            seq=seq,
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

    async def quality_changed(self, conn: Conn) -> None:
        """The session's quality (or device) changed through REST: re-read it, send a new token."""
        session = await get_session(self.pool, conn.session_id)
        if session is None or conn.closing:
            return
        if session.device_type != conn.device_type:
            self.hub.move_device(conn, session.device_type)
            self.device_moved(conn.channel_id)
        conn.quality = session.quality
        self.send_token(conn, "quality")

    # --- ending and errors ---------------------------------------------------------------

    def end(self, conn: Conn, state: SessionEndState, reason: SessionCloseReason) -> None:
        """Tell the socket its session is over (`session`), then close it with 4009."""
        if conn.closing:
            return
        epoch, seq = self._position(conn)
        msg = SessionState(
            epoch=epoch,
            seq=seq,
            ts=time.time(),
            session_id=conn.session_id,
            state=state,
            reason=reason,
        )
        self.hub.send(conn, "session", encode_server(msg))
        self.hub.close(conn, CloseCode.SESSION_ENDED, f"session {state}: {reason}")

    def client_error(self, conn: Conn, code: int, message: str, field: str | None = None) -> None:
        """Answer a client frame with `error`; the socket stays open."""
        self.hub.stats.client_messages["invalid"] += 1
        epoch, seq = self._position(conn)
        msg = Error(epoch=epoch, seq=seq, ts=time.time(), code=code, message=message, field=field)
        self.hub.send(conn, "error", encode_server(msg))

    # --- client messages -----------------------------------------------------------------

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
            await self._handle(conn, msg)
        except StoreError as err:
            log.warning("client message of %s failed: %s", conn.session_id, err.message)
            self.client_error(conn, 503, "Temporarily unavailable: retry shortly", None)

    async def _handle(self, conn: Conn, msg: ClientMessage) -> None:
        self.hub.stats.client_messages[type(msg).__struct_config__.tag] += 1  # type: ignore[index]
        match msg:
            case QualityRequest(quality=quality):
                await self.change_quality(conn, quality.value)
            case Resume(epoch=epoch, last_seq=last_seq):
                await self.resume(conn, epoch, last_seq)
            case Playback():
                pass  # counted above; analytics endpoints store player events

    async def change_quality(self, conn: Conn, quality: str) -> None:
        """Client `quality`: the same effect as PATCH 34, answered by `token`."""
        session = await update_quality(self.pool, conn.session_id, quality)
        if session is None:
            ended = await get_session(self.pool, conn.session_id)
            reason = (ended.end_reason if ended else None) or "expired"
            self.end(conn, "ended" if ended and ended.ended_at else "expired", reason)
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
        state = await self.states.read(room)
        if not conn.closing:
            self.hub.send(conn, "hello", self.hello(conn, state))
