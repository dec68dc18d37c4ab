"""Websocket protocol v1 on one in-process instance (in-process bus), real PostgreSQL.

Sessions are created through the real POST watch endpoint; every assertion is
about what a client sees on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest

from server.auth import verify_stream_token
from tests.conftest import TEST_SECRET, AppClientFactory, auth, token
from tests.wsutil import PROTOCOL, Watcher, end_watch, refused_with, start_watch


@dataclass
class Live:
    http: aiohttp.ClientSession
    base: str
    ws_base: str

    async def watch(self, user: str = "user_123", **kw: Any) -> Watcher:
        sid = await start_watch(self.http, self.base, user, **kw)
        return await Watcher.connect(self.http, self.ws_base, sid, user)


LiveFactory = Callable[..., Awaitable[Live]]


@pytest.fixture
async def live(make_client: AppClientFactory, demo_db: asyncpg.Pool) -> AsyncIterator[LiveFactory]:
    watchers: list[Watcher] = []
    sessions: list[aiohttp.ClientSession] = []

    async def factory(**overrides: Any) -> Live:
        client = await make_client(**overrides)
        base = str(client.make_url("")).rstrip("/")
        http = aiohttp.ClientSession()
        sessions.append(http)
        return Live(http, base, base.replace("http://", "ws://"))

    yield factory
    for w in watchers:
        await w.close()
    for http in sessions:
        await http.close()


async def test_hello_is_the_full_snapshot(live: LiveFactory) -> None:
    lv = await live()
    sid = await start_watch(lv.http, lv.base, timezone="America/New_York", quality="720p")
    w = await Watcher.connect(lv.http, lv.ws_base, sid)
    assert w.ws.protocol == PROTOCOL
    hello = await w.next("hello")
    assert set(hello) >= {
        "type",
        "epoch",
        "seq",
        "ts",
        "session",
        "stream",
        "viewers",
        "epg",
        "token",
        "ping_interval",
    }
    assert hello["epoch"] and isinstance(hello["seq"], int) and hello["ts"] > 0
    assert hello["session"]["session_id"] == sid
    assert hello["session"]["timezone"] == "America/New_York"
    assert hello["stream"]["stream_id"] == "stream_abc123" and hello["stream"]["is_live"]
    assert hello["viewers"]["watching_now"] == 1
    assert hello["viewers"]["watching_now_formatted"] == "1"
    assert hello["epg"]["current_program"]["program_id"] == "prog_002"
    assert hello["epg"]["next_program"]["program_id"] == "prog_003"
    assert hello["epg"]["next_program"]["start_time_formatted"].endswith(("AM", "PM"))
    tok = hello["token"]
    assert tok["quality"] == "720p" and tok["stream_url"].endswith(
        "/stream_abc123/720p/stream.m3u8"
    )
    claims = verify_stream_token(TEST_SECRET, tok["token"])
    assert claims["sid"] == sid and claims["stream_id"] == "stream_abc123"
    await w.close()


async def test_access_token_in_query_is_accepted(live: LiveFactory) -> None:
    lv = await live()
    sid = await start_watch(lv.http, lv.base)
    w = await Watcher.connect(lv.http, lv.ws_base, sid, via_query=True)
    assert (await w.next("hello"))["session"]["session_id"] == sid
    await w.close()


async def test_refusals_use_the_documented_close_codes(live: LiveFactory) -> None:
    lv = await live()
    sid = await start_watch(lv.http, lv.base, "user_123")
    assert await refused_with(lv.http, lv.ws_base, sid) == 4001
    assert (
        await refused_with(lv.http, lv.ws_base, sid, headers={"Authorization": "Bearer not-a-jwt"})
        == 4001
    )
    assert (
        await refused_with(
            lv.http, lv.ws_base, sid, params={"access_token": token("user_123", ttl=-10)}
        )
        == 4001
    )
    assert await refused_with(lv.http, lv.ws_base, sid, headers=auth("user_other")) == 4003
    assert await refused_with(lv.http, lv.ws_base, "sess_watch_nope", headers=auth()) == 4004
    assert await refused_with(lv.http, lv.ws_base, None, headers=auth()) == 4004
    assert (
        await refused_with(lv.http, lv.ws_base, sid, headers=auth(), creator="creator_003") == 4004
    )
    await end_watch(lv.http, lv.base, sid)
    assert await refused_with(lv.http, lv.ws_base, sid, headers=auth()) == 4009


async def test_plain_get_is_told_to_upgrade(live: LiveFactory) -> None:
    lv = await live()
    async with lv.http.get(f"{lv.base}/creators/creator_001/channel/live/ws?session_id=x") as resp:
        assert resp.status == 426
        assert (await resp.json())["status"] == "error"


async def test_invalid_client_messages_get_error_and_the_socket_stays(live: LiveFactory) -> None:
    lv = await live()
    w = await lv.watch()
    hello = await w.next("hello")
    await w.send("{not json")
    err = await w.next("error")
    assert err["code"] == 400 and err["epoch"] == hello["epoch"]
    await w.send({"type": "dance"})
    err = await w.next("error")
    assert err["code"] == 422 and err["field"] == "type"
    await w.send({"type": "quality", "quality": "4k"})
    err = await w.next("error")
    assert err["code"] == 422 and err["field"] == "quality"
    await w.send({"type": "resume", "epoch": "x"})
    assert (await w.next("error"))["field"] == "last_seq"
    await w.ws.send_bytes(b"\x00\x01")
    assert (await w.next("error"))["code"] == 400
    await w.send({"type": "playback", "state": "playing", "position_seconds": 12.5})
    # Still open and served: a resume from another epoch is answered with a hello.
    await w.send({"type": "resume", "epoch": "other", "last_seq": 0})
    assert (await w.next("hello"))["session"]["session_id"] == w.session_id
    assert not w.closed
    await w.close()


async def test_oversized_frame_closes_with_1009(live: LiveFactory) -> None:
    lv = await live(ws_max_message=1024)
    w = await lv.watch()
    await w.next("hello")
    await w.send({"type": "playback", "state": "playing", "pad": "x" * 2000})
    assert await w.wait_closed() == 1009


async def test_resume_answers_hello_only_when_something_was_missed(live: LiveFactory) -> None:
    lv = await live()
    w = await lv.watch()
    hello = await w.next("hello")
    await w.send({"type": "resume", "epoch": hello["epoch"], "last_seq": hello["seq"]})
    await w.send({"type": "dance"})  # a marker: the next message must be its error, not a hello
    assert (await w.next())["type"] == "error"
    await w.send(
        {"type": "resume", "epoch": hello["epoch"], "last_seq": max(0, hello["seq"] - 1)}
        if hello["seq"]
        else {"type": "resume", "epoch": hello["epoch"], "last_seq": 7}
    )
    assert (await w.next())["type"] == "hello"
    await w.close()


async def test_quality_over_the_socket_is_answered_with_a_token(live: LiveFactory) -> None:
    lv = await live()
    w = await lv.watch()
    await w.next("hello")
    await w.send({"type": "quality", "quality": "480p"})
    tok = await w.next("token")
    assert tok["reason"] == "quality" and tok["quality"] == "480p"
    assert tok["stream_url"].endswith("/480p/stream.m3u8")
    claims = verify_stream_token(TEST_SECRET, tok["token"])
    assert claims["quality"] == "480p"
    async with lv.http.get(
        f"{lv.base}/creators/creator_001/channel/live/qualities",
        params={"session_id": w.session_id},
        headers=auth(),
    ) as resp:
        assert (await resp.json())["data"]["current_quality"] == "480p"
    await w.close()


async def test_patch_elsewhere_sends_a_token_to_the_socket(live: LiveFactory) -> None:
    lv = await live()
    w = await lv.watch()
    await w.next("hello")
    async with lv.http.patch(
        f"{lv.base}/creators/creator_001/channel/live/watch",
        headers=auth(),
        json={"session_id": w.session_id, "quality": "360p"},
    ) as resp:
        assert resp.status == 200
    tok = await w.next("token")
    assert tok["quality"] == "360p" and tok["reason"] == "quality"
    await w.close()


async def test_delete_ends_the_socket_with_4009(live: LiveFactory) -> None:
    lv = await live()
    w = await lv.watch()
    await w.next("hello")
    await end_watch(lv.http, lv.base, w.session_id)
    msg = await w.next("session")
    assert msg["state"] == "ended" and msg["reason"] == "user_exit"
    assert await w.wait_closed() == 4009


async def test_viewers_are_pushed_when_the_count_changes(live: LiveFactory) -> None:
    lv = await live(viewer_interval=0.2)
    a = await lv.watch("user_a")
    await a.next("hello")
    b = await lv.watch("user_b")
    await b.next("hello")
    up = await a.next("viewers", where=lambda m: m["watching_now"] == 2)
    assert up["watching_now_formatted"] == "2" and up["peak_today"] >= 2
    await end_watch(lv.http, lv.base, b.session_id, "user_b")
    down = await a.next("viewers", where=lambda m: m["watching_now"] == 1)
    assert down["delta"] == -1 and down["seq"] > up["seq"]
    # Only on change: no further viewers messages while nothing changes.
    await asyncio.sleep(0.8)
    assert a.of_type("viewers")[-1] == down
    await a.close()
    await b.close()


async def test_a_second_socket_of_a_session_replaces_the_first(live: LiveFactory) -> None:
    lv = await live()
    sid = await start_watch(lv.http, lv.base)
    first = await Watcher.connect(lv.http, lv.ws_base, sid)
    await first.next("hello")
    second = await Watcher.connect(lv.http, lv.ws_base, sid)
    await second.next("hello")
    msg = await first.next("session")
    assert msg["state"] == "replaced"
    assert await first.wait_closed() == 4009
    assert not second.closed
    await second.close()
