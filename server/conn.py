"""One websocket's state: who is watching what, its stream token and where its snapshot stands.

A Conn is created by server.ws after authentication and owned by the hub
from `join` to `leave`. It holds no task and no queue: the hub writes
pre-built frames straight to `transport`, the token timer is a loop handle.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime

from aiohttp import web

from store.sessions import WatchSession


class Conn:
    __slots__ = (
        "channel_id", "close_task", "closing", "conn_id", "creator_id", "device_type", "expires_at",
        "hello_epoch", "hello_seq", "opened_at", "quality", "session_id", "started_at",
        "stream_id", "timezone", "token", "token_expires_at", "token_issued_at", "token_timer",
        "transport", "user_id", "ws",
    )

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport,
                 session: WatchSession, opened_at: float) -> None:
        self.ws = ws
        self.conn_id = secrets.token_hex(6)
        self.transport = transport
        self.session_id = session.session_id
        self.user_id = session.user_id
        self.creator_id = session.creator_id
        self.channel_id = session.channel_id
        self.device_type = session.device_type
        self.quality = session.quality
        self.timezone = session.timezone
        self.started_at: datetime = session.started_at
        self.expires_at: datetime = session.expires_at
        self.opened_at = opened_at
        # The live stream tokens are minted for (None while the channel is offline).
        self.stream_id: str | None = session.stream_id
        self.token: str | None = None
        self.token_issued_at = 0.0  # unix seconds
        self.token_expires_at = 0.0
        self.token_timer: asyncio.TimerHandle | None = None
        # Channel events up to (hello_epoch, hello_seq) are in the last snapshot sent.
        self.hello_epoch = ""
        self.hello_seq = -1
        # Set once a close was started; the hub writes nothing more after that.
        self.closing = False
        self.close_task: asyncio.Task[None] | None = None

    def cancel_timers(self) -> None:
        if self.token_timer is not None:
            self.token_timer.cancel()
            self.token_timer = None

    def __repr__(self) -> str:
        return f"<Conn {self.session_id} {self.channel_id} user={self.user_id}>"
