"""Regressions of issue 8 that need a socket or a process: websocket frames, slow clients, and
a frozen PostgreSQL (its processes stopped with SIGSTOP, not killed)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from store.embedded import EmbeddedPostgres, free_port
from store.pg import migrate
from tests.conftest import ServerFactory, auth
from tests.test_ws_protocol import LiveFactory, live  # noqa: F401 - the fixture
from tests.wsutil import Watcher, refused_with, start_watch

WATCH = "/creators/creator_001/channel/live/watch"


async def test_nested_quality_frame_is_an_error_and_the_socket_stays(live: LiveFactory) -> None:  # noqa: F811
    lv = await live()
    w = await lv.watch()
    await w.next("hello")
    deep = '{"type": "quality", "quality": "720p", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    await w.send(deep)
    assert (await w.next("error"))["code"] == 400
    await w.send({"type": "quality", "quality": "720p", "x": [[[[1]]]]})
    assert (await w.next("token"))["type"] == "token"
    assert not w.closed
    await w.close()


async def test_a_flooding_socket_is_told_then_closed_with_4029(live: LiveFactory) -> None:  # noqa: F811
    lv = await live(ws_message_rate=1.0, ws_message_burst=5)
    w = await lv.watch()
    await w.next("hello")
    other = await lv.watch("user_456")
    await other.next("hello")
    for _ in range(5):
        await w.send({"type": "playback", "state": "playing"})
    await w.send({"type": "playback", "state": "playing"})
    err = await w.next("error")
    assert err["code"] == 429
    for _ in range(10):
        if w.closed:
            break
        await w.send({"type": "playback", "state": "playing"})
    assert await w.wait_closed() == 4029
    # The other watcher is untouched and still served.
    await other.send({"type": "quality", "quality": "480p"})
    assert (await other.next("token"))["type"] == "token"
    await other.close()


def _half_request(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


async def test_unfinished_request_headers_are_closed(
    start_server: ServerFactory, demo_db: Any
) -> None:
    server = await start_server(env={"DROPTV_HEADER_TIMEOUT": "1"})
    socks = [_half_request(server.port) for _ in range(20)]
    try:
        deadline = time.monotonic() + 10
        open_ = list(socks)
        while open_ and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            for sock in list(open_):
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        open_.remove(sock)
                except BlockingIOError:
                    pass
                except OSError:
                    open_.remove(sock)
        assert not open_, f"{len(open_)} half-open requests still held"
        # A normal client is served meanwhile.
        async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as resp:
            assert resp.status == 200
    finally:
        for sock in socks:
            sock.close()


def _freeze(pg: EmbeddedPostgres, sig: signal.Signals) -> None:
    """SIGSTOP/SIGCONT the postmaster and every backend: the server hangs, nothing dies."""
    assert pg.proc is not None
    root = psutil.Process(pg.proc.pid)
    for proc in [root, *root.children(recursive=True)]:
        os.kill(proc.pid, sig)


async def test_frozen_postgres_answers_503_within_the_deadline(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    own = EmbeddedPostgres(tmp_path / "pgdata", port=free_port(), fsync=False)
    await asyncio.to_thread(own.start)
    try:
        await migrate(own.url)
        server = await start_server(args=["--database-url", own.url])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/creators/nobody/channel/live") as resp:
                assert resp.status == 404
            _freeze(own, signal.SIGSTOP)
            try:
                started = time.monotonic()
                results = await asyncio.gather(
                    *(
                        http.post(
                            server.url + WATCH,
                            json={"channel_id": "ch_101", "device_type": "web"},
                            headers=auth(f"user_{i}"),
                        )
                        for i in range(5)
                    ),
                    http.get(f"{server.url}/creators/nobody/channel/live"),
                )
                elapsed = time.monotonic() - started
                for resp in results:
                    body = await resp.json()
                    assert resp.status == 503, body
                    assert int(resp.headers["Retry-After"]) >= 1
                assert elapsed < 13, elapsed
            finally:
                _freeze(own, signal.SIGCONT)
            deadline = time.monotonic() + 30
            while True:
                async with http.get(f"{server.url}/creators/nobody/channel/live") as resp:
                    if resp.status == 404 or time.monotonic() > deadline:
                        assert resp.status == 404
                        break
                await asyncio.sleep(0.5)
    finally:
        await asyncio.to_thread(own.stop)


async def test_a_session_id_the_database_cannot_hold_does_not_break_other_connects(
    live: LiveFactory,  # noqa: F811
) -> None:
    """Connects share one claim statement: a NUL in one must not fail its neighbours."""
    lv = await live()
    sid = await start_watch(lv.http, lv.base)
    codes, watcher = await asyncio.gather(
        asyncio.gather(
            *(
                refused_with(lv.http, lv.ws_base, bad, headers=auth())
                for bad in ("sess\x00x", "x" * 65, "a b")
            )
        ),
        Watcher.connect(lv.http, lv.ws_base, sid),
    )
    assert codes == [4004, 4004, 4004]
    assert (await watcher.next("hello"))["session"]["session_id"] == sid
    await watcher.close()
