"""The websocket endpoint: upgrade, authenticate, then one reader coroutine per socket.

`GET /creators/{creator_id}/channel/live/ws?session_id=...` with subprotocol
`droptv.live.v1` (selected when the client offers it). The bearer token comes
from the `Authorization` header or, for browsers, the `access_token` query
parameter. Refusals happen after the upgrade, as close codes a browser can
see (protocol.errors.CloseCode): 4001 bad or missing token, 4003 the session
belongs to another user, 4004 unknown or no longer live session (or another
creator's), 4009 the session ended, 1012 this instance is draining. A plain
GET without the upgrade headers gets a 426 error envelope.

Each socket's kernel send buffer is capped at `ws_soft_limit` (see
`_bound_kernel_buffer`), so per-socket memory is bounded in the kernel too.

Liveness: the server pings every `ping_interval` (aiohttp heartbeat); a socket
that does not answer within half an interval is dropped, so a half-open
connection goes within 1.5 intervals. Client frames larger than
`ws_max_message` close the socket with 1009.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from aiohttp import WSMsgType, web

from protocol.errors import ApiError, CloseCode, Unauthorized
from protocol.messages import PROTOCOL
from server.auth import bearer_from, verify_bearer
from server.conn import Conn
from server.realtime import REALTIME, Realtime
from store.sessions import WatchSession, get_session, touch_sessions

log = logging.getLogger(__name__)

__all__ = ["handle"]


class Refused(Exception):
    """The socket may not watch: close with `code`."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def authenticate(request: web.Request, rt: Realtime) -> WatchSession:
    """The caller's live session for this creator, touched; raises Refused otherwise."""
    try:
        raw = bearer_from(request) or request.query.get("access_token")
        if not raw:
            raise Refused(CloseCode.UNAUTHORIZED, "authentication required")
        caller = verify_bearer(rt.settings.jwt_secret, raw)
    except Unauthorized as err:
        raise Refused(CloseCode.UNAUTHORIZED, err.message) from None
    session_id = request.query.get("session_id", "")
    if not session_id or len(session_id) > 64:
        raise Refused(CloseCode.SESSION_NOT_FOUND, "session_id is required")
    session = await get_session(rt.pool, session_id)
    if session is None:
        raise Refused(CloseCode.SESSION_NOT_FOUND, "session not found")
    if session.user_id != caller.user_id:
        raise Refused(CloseCode.FORBIDDEN, "session belongs to another user")
    if session.creator_id != request.match_info["creator_id"]:
        raise Refused(CloseCode.SESSION_NOT_FOUND, "session is not on this creator's channel")
    if session.ended_at is not None:
        raise Refused(CloseCode.SESSION_ENDED, f"session ended ({session.end_reason or 'ended'})")
    if not await touch_sessions(rt.pool, [session_id]):
        raise Refused(CloseCode.SESSION_NOT_FOUND, "session is no longer live")
    return session


async def handle(request: web.Request) -> web.StreamResponse:
    rt = request.app[REALTIME]
    settings = rt.settings
    ws = web.WebSocketResponse(
        protocols=(PROTOCOL,), heartbeat=settings.ping_interval, autoping=True,
        max_msg_size=settings.ws_max_message, compress=False, timeout=rt.hub.close_timeout,
    )
    if not ws.can_prepare(request).ok:
        raise ApiError("Websocket upgrade required (subprotocol droptv.live.v1)", status=426)
    await ws.prepare(request)
    transport = request.transport
    _bound_kernel_buffer(transport, settings.ws_soft_limit)
    if rt.hub.draining or transport is None:
        await ws.close(code=CloseCode.DRAINING, message=b"instance draining")
        return ws
    try:
        session = await authenticate(request, rt)
    except Refused as refused:
        rt.hub.stats.closed[int(refused.code)] += 1
        await ws.close(code=refused.code, message=refused.reason.encode()[:123])
        return ws
    conn = Conn(ws, transport, session, time.time())
    try:
        await rt.join(conn)
        await read_loop(rt, conn)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("websocket of %s failed", conn.session_id)
        rt.hub.close(conn, 1011, "internal error")
    finally:
        await rt.leave(conn)
        if conn.close_task is not None:
            # Let the close (frame, grace, abort) finish before aiohttp drops the transport.
            await asyncio.gather(conn.close_task, return_exceptions=True)
    return ws


def _bound_kernel_buffer(transport: asyncio.BaseTransport | None, size: int) -> None:
    """Cap the kernel send buffer (Linux doubles the value) instead of letting it autotune to
    megabytes: a client that stops reading then reaches the hub's limits after a bounded
    amount of kernel memory too, and is detected as slow sooner."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(4096, size))
        except OSError as err:
            log.debug("SO_SNDBUF not set: %r", err)


async def read_loop(rt: Realtime, conn: Conn) -> None:
    """The socket's one reader: client messages in order, until it closes."""
    ws = conn.ws
    while True:
        msg = await ws.receive()
        if msg.type is WSMsgType.TEXT:
            if not conn.closing:
                await rt.on_text(conn, msg.data)
        elif msg.type is WSMsgType.BINARY:
            rt.client_error(conn, 400, "Binary frames are not accepted: send JSON text", "frame")
        else:  # CLOSE, CLOSING, CLOSED, or ERROR (1009 oversized, missed pong): aiohttp closed it
            return
