"""One websocket's state: who is watching what, its stream token and where its snapshot stands.

A Conn is created by server.ws after authentication and owned by the hub
from `join` to `leave`. It holds no task, no queue and no timer handle: the
hub writes pre-built frames straight to `transport`, the shared liveness
sweep (server.timers.Liveness) pings it, and the shared token clock
(server.timers.TokenClock) refreshes its stream token.

Memory. Thousands of these live per instance, so a Conn keeps only what it
needs after the upgrade: no aiohttp request, no session row, no copy of the
stream token (a `hello` mints a fresh one). The few values drawn from small
vocabularies (channel, creator, stream, device, quality, zone) are interned,
so all watchers of a channel share one string object each.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from datetime import datetime

from aiohttp import web

from store.sessions import WatchSession


class Conn:
    __slots__ = (
        "budget",
        "budget_at",
        "channel_id",
        "close_code",
        "close_task",
        "closing",
        "conn_id",
        "creator_id",
        "device_type",
        "expires_at",
        "hello_epoch",
        "hello_seq",
        "last_rx",
        "ping_sent",
        "quality",
        "refused",
        "session_id",
        "started_at",
        "stream_id",
        "timezone",
        "token_expires_at",
        "token_issued_at",
        "token_slot",
        "transport",
        "user_id",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        session: WatchSession,
        now: float,
    ) -> None:
        """`now` is the loop's clock (liveness is measured on it)."""
        intern = sys.intern
        self.ws = ws
        self.conn_id = secrets.token_hex(6)
        self.transport = transport
        self.session_id = session.session_id
        self.user_id = session.user_id
        self.creator_id = intern(session.creator_id)
        self.channel_id = intern(session.channel_id)
        self.device_type = intern(session.device_type)
        self.quality = intern(session.quality)
        self.timezone = intern(session.timezone)
        self.started_at: datetime = session.started_at
        self.expires_at: datetime = session.expires_at
        # The live stream tokens are minted for (None while the channel is offline).
        self.stream_id: str | None = intern(session.stream_id)
        self.token_issued_at = 0.0  # unix seconds of the current token
        self.token_expires_at = 0.0
        self.token_slot = 0  # the token clock slot its refresh is due in; 0: none
        # Liveness (loop clock): the last frame received, the unanswered ping (0: none).
        self.last_rx = now
        self.ping_sent = 0.0
        # Channel events up to (hello_epoch, hello_seq) are in the last snapshot sent.
        self.hello_epoch = ""
        self.hello_seq = -1
        # Client message budget (token bucket on the loop clock) and refusals in a row.
        self.budget = -1.0  # negative: full on first use
        self.budget_at = now
        self.refused = 0
        # Set once a close was started; the hub writes nothing more after that.
        self.closing = False
        self.close_code = 0  # the code the server closed it with (0: not closed by the server)
        self.close_task: asyncio.Task[None] | None = None

    def spend(self, now: float, rate: float, burst: float) -> bool:
        """Take one client message from the bucket (`rate` per second, `burst` deep).

        False when it is empty: the caller answers `error` 429, and counts the
        refusal in `refused` (reset by the next message that fits).
        """
        if self.budget < 0:
            self.budget = burst
        else:
            self.budget = min(burst, self.budget + (now - self.budget_at) * rate)
        self.budget_at = now
        if self.budget >= 1.0:
            self.budget -= 1.0
            self.refused = 0
            return True
        self.refused += 1
        return False

    def cancel_timers(self) -> None:
        """Disarm the token refresh (the clock drops a disarmed entry when it comes due)."""
        self.token_slot = 0

    def __repr__(self) -> str:
        return f"<Conn {self.session_id} {self.channel_id} user={self.user_id}>"
