"""The websocket endpoint: upgrade, authenticate, then one reader coroutine per socket.

`GET /creators/{creator_id}/channel/live/ws?session_id=...` with subprotocol
`droptv.live.v1` (selected when the client offers it). The bearer token comes
from the `Authorization` header or, for browsers, the `access_token` query
parameter. Refusals happen after the upgrade, as close codes a browser can
see (protocol.errors.CloseCode): 4001 bad or missing token, 4003 the session
belongs to another user, 4004 unknown or no longer live session (or another
creator's), 4009 the session ended, 1012 this instance is draining. A plain
GET without the upgrade headers gets a 426 error envelope.

Authentication is one PostgreSQL statement shared by concurrent connects
(store.sockets.SocketLedger.claim):
it touches the session and records this instance as its socket's holder only
if it is the caller's, on this creator's channel and live, and returns the
row either way, so a refusal can name its reason. The previous holder tells
whether a socket of the session may live on another instance: only then is
it told over the bus that it was replaced.

Each socket's kernel send buffer is capped at `ws_soft_limit` (see
`_bound_kernel_buffer`), so per-socket memory is bounded in the kernel too.

Liveness: the hub's shared sweep (server.timers.Liveness) pings a socket that
sent nothing for `ping_interval` and drops one that then stays silent for half
an interval (a half-open connection goes within two intervals); every frame
the reader sees counts as an answer. aiohttp's own
heartbeat is off (it keeps two timer handles per socket), and so is autoping,
so that pongs reach the reader; pings from the client are answered here.
Client frames larger than `ws_max_message` close the socket with 1009.

Memory per socket matters here (thousands per instance): the handler keeps
no session row, and the query string is parsed into a temporary dict instead
of the request's cached MultiDict.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from typing import Final
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from protocol.errors import ApiError, CloseCode, Unauthorized
from protocol.messages import PROTOCOL
from protocol.values import ID_PATTERN
from server.auth import bearer_from, verify_bearer
from server.conn import Conn
from server.cors import check_websocket_origin
from server.realtime import Realtime
from server.state import REALTIME, SNDBUF_CAPPED
from store.sockets import Claim

log = logging.getLogger(__name__)

__all__ = ["handle"]

_SESSION_ID: Final = re.compile(ID_PATTERN)


class Refused(Exception):
    """The socket may not watch: close with `code`."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def authenticate(request: web.Request, rt: Realtime) -> Claim:
    """The claim of the caller's live session for this creator (touched, its socket taken
    here); raises Refused otherwise."""
    query = dict(parse_qsl(request.raw_path.partition("?")[2]))
    try:
        raw = bearer_from(request) or query.get("access_token")
        if not raw:
            raise Refused(CloseCode.UNAUTHORIZED, "authentication required")
        caller = verify_bearer(rt.settings.jwt_secret, raw, remember=False)
    except Unauthorized as err:
        raise Refused(CloseCode.UNAUTHORIZED, err.message) from None
    session_id = query.get("session_id", "")
    if not session_id:
        raise Refused(CloseCode.SESSION_NOT_FOUND, "session_id is required")
    # Checked before the claim: claims share a statement, and a value PostgreSQL cannot hold
    # (a NUL) must not fail the other sockets' claims in that batch.
    if not _SESSION_ID.match(session_id):
        raise Refused(CloseCode.SESSION_NOT_FOUND, "session not found")
    creator_id = request.match_info["creator_id"]
    claim = await rt.ledger.claim(session_id, user_id=caller.user_id, creator_id=creator_id)
    session = claim.session
    if session is None:
        raise Refused(CloseCode.SESSION_NOT_FOUND, "session not found")
    if claim.touched:
        return claim
    if session.user_id != caller.user_id:
        raise Refused(CloseCode.FORBIDDEN, "session belongs to another user")
    if session.creator_id != creator_id:
        raise Refused(CloseCode.SESSION_NOT_FOUND, "session is not on this creator's channel")
    if session.ended_at is not None:
        raise Refused(CloseCode.SESSION_ENDED, f"session ended ({session.end_reason or 'ended'})")
    raise Refused(CloseCode.SESSION_NOT_FOUND, "session is no longer live")


async def admit(
    request: web.Request, rt: Realtime, ws: web.WebSocketResponse
) -> tuple[Conn, bool] | None:
    """Authenticate the upgraded socket and build its Conn; None if it was closed instead.

    The flag says whether another instance took a socket for this session before
    (it may still hold it and must be told it was replaced).
    """
    transport = request.transport
    if rt.hub.draining or transport is None:
        await ws.close(code=CloseCode.DRAINING, message=b"instance draining")
        return None
    if not request.app.get(SNDBUF_CAPPED, False):
        _bound_kernel_buffer(transport, rt.settings.ws_soft_limit)
    try:
        claim = await authenticate(request, rt)
    except Refused as refused:
        rt.hub.stats.closed[int(refused.code)] += 1
        await ws.close(code=refused.code, message=refused.reason.encode()[:123])
        return None
    assert claim.session is not None
    conn = Conn(ws, transport, claim.session, asyncio.get_running_loop().time())
    return conn, claim.held_by not in (None, rt.instance_id)


async def handle(request: web.Request) -> web.StreamResponse:
    rt = request.app[REALTIME]
    settings = rt.settings
    ws = web.WebSocketResponse(
        protocols=(PROTOCOL,),
        heartbeat=None,
        autoping=False,
        max_msg_size=settings.ws_max_message,
        compress=False,
        timeout=rt.hub.close_timeout,
    )
    check_websocket_origin(request)  # 403 before the upgrade when DROPTV_ALLOWED_ORIGINS is set
    if not ws.can_prepare(request).ok:
        raise ApiError("Websocket upgrade required (subprotocol droptv.live.v1)", status=426)
    await ws.prepare(request)
    admitted = await admit(request, rt, ws)
    if admitted is None:
        return ws
    conn, held_elsewhere = admitted
    del admitted
    loop = asyncio.get_running_loop()
    try:
        await rt.join(conn, held_elsewhere=held_elsewhere)
        # The socket's one reader: client messages in order, until it closes.
        while True:
            msg = await ws.receive()
            conn.last_rx = loop.time()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                if not conn.closing:
                    await rt.ops.on_text(conn, msg.data)
            elif kind is WSMsgType.PONG:
                pass  # the liveness sweep reads last_rx
            elif kind is WSMsgType.PING:
                if not conn.closing:
                    await ws.pong(msg.data)
            elif kind is WSMsgType.BINARY:
                rt.ops.client_error(
                    conn, 400, "Binary frames are not accepted: send JSON text", "frame"
                )
            else:  # CLOSE, CLOSING, CLOSED, or ERROR (1009 oversized): aiohttp closed it
                break
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
    amount of kernel memory too, and is detected as slow sooner. (Kernel memory: not in RSS.)"""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(4096, size))
        except OSError as err:
            log.debug("SO_SNDBUF not set: %r", err)
