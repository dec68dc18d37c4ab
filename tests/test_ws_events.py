"""Pushed events on one in-process instance: token refresh, EPG boundaries, stream changes,
liveness through the socket and session expiry. Changes go through the real admin API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import AppClientFactory, auth
from tests.wsutil import Watcher, admin, start_watch


class Env:
    def __init__(self, client: TestClient[Any, Any], http: aiohttp.ClientSession) -> None:
        self.client = client
        self.http = http
        self.base = str(client.make_url("")).rstrip("/")
        self.ws_base = self.base.replace("http://", "ws://")

    async def watch(self, user: str = "user_123", **kw: Any) -> Watcher:
        sid = await start_watch(self.http, self.base, user, **kw)
        return await Watcher.connect(self.http, self.ws_base, sid, user)

    async def viewers(self) -> int:
        async with self.http.get(f"{self.base}/creators/creator_001/channel/live/viewers") as resp:
            return int((await resp.json())["data"]["viewers"]["watching_now"])


@pytest.fixture
async def env_factory(make_client: AppClientFactory, demo_db: asyncpg.Pool) -> AsyncIterator[Any]:
    https: list[aiohttp.ClientSession] = []

    async def factory(**overrides: Any) -> Env:
        client = await make_client(**overrides)
        http = aiohttp.ClientSession()
        https.append(http)
        return Env(client, http)

    yield factory
    for http in https:
        await http.close()


async def test_token_is_refreshed_before_it_expires(env_factory: Any) -> None:
    env = await env_factory(stream_token_ttl=3.0)
    w = await env.watch()
    hello = await w.next("hello")
    first_expiry = datetime.fromisoformat(hello["token"]["token_expires_at"])
    refresh = await w.next("token", timeout=5)
    arrived = datetime.now(UTC)
    assert refresh["reason"] == "refresh"
    assert arrived < first_expiry
    assert refresh["token"] != hello["token"]["token"]
    second = await w.next("token", timeout=5)
    assert datetime.fromisoformat(second["token_expires_at"]) > first_expiry
    await w.close()


async def test_epg_is_pushed_on_edit_and_at_the_program_boundary(env_factory: Any) -> None:
    env = await env_factory()
    w = await env.watch(timezone="America/New_York")
    await w.next("hello")
    now = datetime.now(UTC)
    boundary = now + timedelta(seconds=2.5)
    url = f"{env.base}/admin/channels/ch_101/programs"
    await admin(
        env.http,
        "POST",
        url,
        {
            "program_id": "prog_t1",
            "title": "Short One",
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": boundary.isoformat(),
        },
    )
    edit = await w.next(
        "epg", where=lambda m: (m["current_program"] or {}).get("program_id") == "prog_t1"
    )
    await admin(
        env.http,
        "POST",
        url,
        {
            "program_id": "prog_t2",
            "title": "Right After",
            "starts_at": boundary.isoformat(),
            "ends_at": (boundary + timedelta(minutes=5)).isoformat(),
        },
    )
    edit2 = await w.next(
        "epg", where=lambda m: (m["next_program"] or {}).get("program_id") == "prog_t2"
    )
    assert edit2["seq"] > edit["seq"]
    assert edit2["next_program"]["start_time_formatted"].endswith(("AM", "PM"))
    at_boundary = await w.next("epg", timeout=10)
    assert time.time() >= boundary.timestamp()
    assert at_boundary["current_program"]["program_id"] == "prog_t2"
    assert at_boundary["current_program"]["elapsed_minutes"] == 0
    assert at_boundary["ts"] >= boundary.timestamp()
    assert at_boundary["seq"] > edit2["seq"]
    await w.close()


async def test_stream_health_and_offline_are_pushed(env_factory: Any) -> None:
    env = await env_factory()
    w = await env.watch()
    await w.next("hello")
    live_url = f"{env.base}/admin/channels/ch_101/live"
    await admin(env.http, "PATCH", live_url, {"health": "poor"})
    msg = await w.next("stream")
    assert msg == {**msg, "is_live": True, "health": "poor", "stream_id": "stream_abc123"}
    await admin(env.http, "PATCH", live_url, {"title": "New Title"})
    assert (await w.next("stream"))["title"] == "New Title"
    await admin(env.http, "DELETE", live_url)
    off = await w.next("stream")
    assert off["is_live"] is False and off["stream_id"] is None
    ended = await w.next("session")
    assert ended["state"] == "ended" and ended["reason"] == "stream_offline"
    assert await w.wait_closed() == 4009


async def test_an_open_socket_keeps_its_session_counted(env_factory: Any) -> None:
    env = await env_factory(session_ttl=1.2, viewer_interval=0.2)
    w = await env.watch()
    await w.next("hello")
    await asyncio.sleep(3.0)  # 2.5 TTLs without any REST heartbeat
    assert await env.viewers() == 1
    await w.close()
    async with asyncio.timeout(10):
        while await env.viewers() != 0:
            await asyncio.sleep(0.2)


async def test_an_expired_session_is_told_and_closed(env_factory: Any) -> None:
    env = await env_factory(session_max_age=1.5, session_ttl=1.2)
    w = await env.watch()
    await w.next("hello")
    msg = await w.next("session", timeout=10)
    assert msg["state"] == "expired"
    assert await w.wait_closed() == 4009


async def test_shutdown_closes_sockets_with_1012(env_factory: Any) -> None:
    env = await env_factory()
    a = await env.watch("user_a")
    b = await env.watch("user_b")
    await a.next("hello")
    await b.next("hello")
    await env.client.close()
    assert await a.wait_closed() == 1012
    assert await b.wait_closed() == 1012


async def test_headers_without_auth_scheme_are_refused(env_factory: Any) -> None:
    env = await env_factory()
    sid = await start_watch(env.http, env.base)
    async with env.http.ws_connect(
        f"{env.ws_base}/creators/creator_001/channel/live/ws",
        params={"session_id": sid},
        headers={"Authorization": auth()["Authorization"].replace("Bearer", "Basic")},
    ) as ws:
        await ws.receive()
        assert ws.close_code == 4001


async def test_a_socket_that_stops_answering_pings_is_dropped(env_factory: Any) -> None:
    """Half-open: the peer neither reads nor pongs; the server gives up within 1.5 intervals."""
    from tests.wsutil import RawSocket

    env = await env_factory(ping_interval=0.5)
    sid = await start_watch(env.http, env.base)
    port = env.client.server.port
    raw = await asyncio.to_thread(
        RawSocket.connect, port, f"/creators/creator_001/channel/live/ws?session_id={sid}", auth()
    )
    started = time.monotonic()
    frames, eof = await asyncio.to_thread(raw.read_frames, 10.0)
    raw.close()
    assert eof and time.monotonic() - started < 5.0
    opcodes = [op for op, _ in frames]
    assert opcodes[0] == 0x1 and 0x9 in opcodes  # the hello, then a ping left unanswered
