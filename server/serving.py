"""Running one aiohttp application on a socket, with a deadline for request headers.

aiohttp times out idle keep-alive connections, but not a new connection whose
first request never finishes its headers (a slowloris client): each would be
held for ever. `HeaderGuard` watches connections that have not yet produced a
complete request and closes those older than `header_timeout`. It looks only
at connections made since its last sweep plus those still waiting, so its
cost follows the connect rate, not the number of open sockets.

`serve` (and `run_instance`, which builds the app on a fresh uvloop) is
`web.run_app` reduced to what we use (one TCP site, SIGINT/SIGTERM
for a graceful stop: on_shutdown, then cleanup_ctx), plus the guard.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Final

import uvloop
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from server.app import create_app
from server.config import Settings
from server.state import SNDBUF_CAPPED

log = logging.getLogger(__name__)

SWEEP_INTERVAL: Final = 1.0
BACKLOG: Final = 4096


class HeaderGuard:
    """Close connections that have not sent one complete request within `timeout` seconds."""

    def __init__(self, server: web.Server, timeout: float) -> None:
        self._server = server
        self._timeout = timeout
        self._watched: dict[RequestHandler, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.closed = 0
        made = server.connection_made

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._watched[handler] = asyncio.get_running_loop().time() + timeout

        # The one hook aiohttp calls for every new connection.
        server.connection_made = connection_made  # type: ignore[method-assign]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="header-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def sweep(self, now: float) -> None:
        for handler, deadline in list(self._watched.items()):
            # `_request_count` counts requests whose headers were parsed on this connection.
            if getattr(handler, "_request_count", 1) > 0 or handler.transport is None:
                del self._watched[handler]
            elif now >= deadline:
                del self._watched[handler]
                self.closed += 1
                handler.force_close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep(loop.time())


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool,
    header_timeout: float,
    shutdown_timeout: float,
    send_buffer: int,
) -> None:
    sock = listening_socket(host, port, reuse_port=reuse_port, send_buffer=send_buffer)
    app[SNDBUF_CAPPED] = True
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    guard = HeaderGuard(runner.server, header_timeout) if runner.server else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        if guard is not None:
            guard.start()
        log.info("serving on %s:%s", host, port)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if guard is not None:
            await guard.stop()
        await runner.cleanup()
        sock.close()


def listening_socket(host: str, port: int, *, reuse_port: bool, send_buffer: int) -> socket.socket:
    """The bound, listening socket of an instance.

    A deep accept queue (BACKLOG): a reconnect storm must not overflow the
    default 128 into SYN drops and 1-15 s client retries. SO_SNDBUF set here
    is inherited by every accepted socket, which caps each watcher's kernel
    send buffer (so a client that stops reading is seen as slow) without a
    per-connect lookup of the socket object (a tenth of a connect's CPU).
    Raises OSError (e.g. EADDRINUSE) as binding does.
    """
    family, type_, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(4096, send_buffer))
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(
    loop: asyncio.AbstractEventLoop,
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    header_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
    send_buffer: int = 256 * 1024,
) -> None:
    """Serve `app` on `loop` until SIGINT/SIGTERM, then shut it down gracefully."""
    loop.run_until_complete(
        _serve(
            app,
            host,
            port,
            reuse_port=reuse_port,
            header_timeout=header_timeout,
            shutdown_timeout=shutdown_timeout,
            send_buffer=send_buffer,
        )
    )


def run_instance(settings: Settings, *, reuse_port: bool = False) -> None:
    """Serve one instance on a new uvloop until SIGTERM/SIGINT (on_shutdown, then cleanup_ctx)."""
    settings.warn_if_insecure()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        serve(
            loop,
            create_app(settings),
            settings.host,
            settings.port,
            reuse_port=reuse_port,
            header_timeout=settings.header_timeout,
            send_buffer=settings.ws_soft_limit,
        )
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
