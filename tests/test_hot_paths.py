"""The hot paths stay correct while cheap: batched heartbeats, the read cache and its
invalidation, reused hello snapshots, cached bearer checks and the shared ping sweep.

Everything runs against the real app, PostgreSQL and (for the bus) in-process or Valkey;
changes go through the admin API as an operator's would.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from server.state import REALTIME
from store import heartbeats, sessions
from store.embedded import EmbeddedValkey
from tests.conftest import AppClientFactory, auth, token
from tests.wsutil import Watcher, admin, start_watch

LIVE = "/creators/creator_001/channel/live"


async def _watch(client: TestClient[Any, Any], user: str) -> str:
    resp = await client.post(
        f"{LIVE}/watch", json={"channel_id": "ch_101", "device_type": "web"}, headers=auth(user)
    )
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["data"]["session"]["session_id"])


async def _beat(
    client: TestClient[Any, Any], sid: str, user: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    resp = await client.get(
        f"{LIVE}/heartbeat", params={"session_id": sid}, headers=headers or auth(user)
    )
    return resp.status, await resp.json()


async def _create(pool: asyncpg.Pool, user: str) -> sessions.WatchSession:
    created, _ = await sessions.create_session(
        pool,
        user_id=user,
        creator_id="creator_001",
        channel_id="ch_101",
        stream_id="stream_abc123",
        device_type="web",
        quality="auto",
        timezone="UTC",
        ttl=75.0,
        max_age=3600.0,
        limit=3,
    )
    return created


# --- batched heartbeats (store.heartbeats.HeartbeatBatcher) ------------------------------------


async def test_concurrent_heartbeats_of_one_session_add_up_as_if_one_by_one(
    client: TestClient[Any, Any],
) -> None:
    sid = await _watch(client, "user_a")  # told 1
    await _watch(client, "user_b")
    await _watch(client, "user_c")
    results = await asyncio.gather(*(_beat(client, sid, "user_a") for _ in range(12)))
    assert {status for status, _ in results} == {200}
    viewers = [body["data"]["viewers"] for _, body in results]
    assert {v["watching_now"] for v in viewers} == {3}
    # Exactly one of them was told the change since POST watch; the others nothing new.
    assert sorted(v["delta"] for v in viewers) == [0] * 11 + [2]
    status, body = await _beat(client, sid, "user_a")
    assert (status, body["data"]["viewers"]["delta"]) == (200, 0)


async def test_one_statement_serves_many_sessions(demo_db: asyncpg.Pool) -> None:
    made = [await _create(demo_db, f"user_{i}") for i in range(8)]
    ended = made[-1]
    await sessions.end_session(demo_db, ended.session_id, "user_exit")
    batcher = heartbeats.HeartbeatBatcher(demo_db)
    try:
        requests = [heartbeats.BeatRequest(s.session_id, s.user_id, "creator_001", 7) for s in made]
        requests.append(heartbeats.BeatRequest("sess_watch_missing", "user_x", "creator_001", 7))
        beats = await asyncio.gather(*(batcher.beat(r) for r in requests))
    finally:
        await batcher.close()
    assert (batcher.batches, batcher.requests) == (1, 9)
    assert beats[-1] is None
    for s, beat in zip(made, beats, strict=False):
        assert beat is not None and beat.session.session_id == s.session_id
        assert beat.touched is (s is not ended)
        assert beat.previous == 0
    again = await heartbeats.beat_session(
        demo_db,
        made[0].session_id,
        user_id=made[0].user_id,
        creator_id="creator_001",
        watching_now=9,
    )
    assert again is not None and (again.touched, again.previous) == (True, 7)


async def test_another_callers_heartbeat_never_touches_the_session(demo_db: asyncpg.Pool) -> None:
    owned = await _create(demo_db, "owner")
    batcher = heartbeats.HeartbeatBatcher(demo_db)
    try:
        mine, theirs, wrong_creator, admin_beat = await asyncio.gather(
            batcher.beat(heartbeats.BeatRequest(owned.session_id, "owner", "creator_001", 4)),
            batcher.beat(heartbeats.BeatRequest(owned.session_id, "intruder", "creator_001", 5)),
            batcher.beat(heartbeats.BeatRequest(owned.session_id, "owner", "creator_002", 6)),
            batcher.beat(heartbeats.BeatRequest(owned.session_id, None, "creator_001", 8)),
        )
    finally:
        await batcher.close()
    assert mine is not None and (mine.touched, mine.previous) == (True, 0)
    assert theirs is not None and not theirs.touched
    assert wrong_creator is not None and not wrong_creator.touched
    assert admin_beat is not None and (admin_beat.touched, admin_beat.previous) == (True, 4)
    assert batcher.batches == 4  # one session per statement: different callers wait their turn
    stored = await sessions.get_session(demo_db, owned.session_id)
    assert stored is not None and stored.reported_watching == 8


async def test_an_intruder_polling_alongside_the_owner_gets_403(
    client: TestClient[Any, Any],
) -> None:
    sid = await _watch(client, "user_a")
    results = await asyncio.gather(
        *(_beat(client, sid, user) for user in ["user_a", "intruder", "user_a", "intruder"])
    )
    assert [status for status, _ in results] == [200, 403, 200, 403]


# --- the read cache and its invalidation (server.cache) --------------------------------------


async def test_a_stream_change_shows_at_once_on_the_instance_that_made_it(
    client: TestClient[Any, Any],
) -> None:
    sid = await _watch(client, "user_a")
    status, body = await _beat(client, sid, "user_a")
    assert (status, body["data"]["stream"]["health"]) == (200, "good")
    async with aiohttp.ClientSession() as http:
        await admin(
            http, "PATCH", str(client.make_url("/admin/channels/ch_101/live")), {"health": "poor"}
        )
    status, body = await _beat(client, sid, "user_a")
    assert (status, body["data"]["stream"]["health"]) == (200, "poor")


async def test_an_instance_without_watchers_catches_up_within_the_bound(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    """No Redis: each instance has its own bus, so B never hears of A's change and relies on
    its cache entries expiring (viewer_interval)."""
    a = await make_client(viewer_interval=0.3)
    b = await make_client(viewer_interval=0.3)
    sid = await _watch(a, "user_a")
    status, body = await _beat(b, sid, "user_a")
    assert (status, body["data"]["stream"]["health"]) == (200, "good")
    async with aiohttp.ClientSession() as http:
        await admin(
            http, "PATCH", str(a.make_url("/admin/channels/ch_101/live")), {"health": "fair"}
        )
    deadline = time.monotonic() + 10
    while True:
        status, body = await _beat(b, sid, "user_a")
        assert status == 200
        if body["data"]["stream"]["health"] == "fair":
            break
        assert time.monotonic() < deadline, "instance B kept the old stream"
        await asyncio.sleep(0.1)


async def test_a_schedule_edit_reaches_the_heartbeat_at_once(client: TestClient[Any, Any]) -> None:
    sid = await _watch(client, "user_a")
    _, body = await _beat(client, sid, "user_a")
    current = body["data"]["epg"]["current_program"]["program_id"]
    async with aiohttp.ClientSession() as http:
        await admin(http, "DELETE", str(client.make_url(f"/admin/programs/{current}")))
    _, body = await _beat(client, sid, "user_a")
    now_on = body["data"]["epg"]["current_program"]
    assert now_on is None or now_on["program_id"] != current


# --- websocket connects ----------------------------------------------------------------------


async def test_a_hello_after_a_stream_change_is_not_served_from_the_old_snapshot(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client()
    base = str(client.make_url("")).rstrip("/")
    ws_base = base.replace("http://", "ws://")
    async with aiohttp.ClientSession() as http:
        first = await Watcher.connect(
            http, ws_base, await start_watch(http, base, "user_a"), "user_a"
        )
        assert (await first.next("hello"))["stream"]["title"] == "Behind the Laughs"
        await admin(http, "PATCH", f"{base}/admin/channels/ch_101/live", {"title": "Late Show"})
        await first.next("stream")  # the change has reached this instance's room
        second = await Watcher.connect(
            http, ws_base, await start_watch(http, base, "user_b"), "user_b"
        )
        hello = await second.next("hello")
        assert hello["stream"]["title"] == "Late Show"
        # Its position is past the change: it is not sent the `stream` event again.
        await first.close()
        await second.close()
        assert second.of_type("stream") == []


async def test_a_socket_on_another_instance_is_replaced_only_when_there_can_be_one(
    make_client: AppClientFactory, valkey: EmbeddedValkey, redis_prefix: str, demo_db: asyncpg.Pool
) -> None:
    a, b = [
        await make_client(redis_url=valkey.url, redis_prefix=redis_prefix, instance_id=name)
        for name in ("inst-a", "inst-b")
    ]
    base_a, base_b = (str(c.make_url("")).rstrip("/") for c in (a, b))
    async with aiohttp.ClientSession() as http:
        sid = await start_watch(http, base_a, "user_a")
        first = await Watcher.connect(http, base_a.replace("http://", "ws://"), sid, "user_a")
        await first.next("hello")
        second = await Watcher.connect(http, base_b.replace("http://", "ws://"), sid, "user_a")
        await second.next("hello")
        assert (await first.next("session"))["state"] == "replaced"
        assert await first.wait_closed() == 4009
        published = b.app[REALTIME].hub.stats.published["session_ended"]
        assert published == 1
        # Back on the instance that holds it: replaced locally, nothing sent over the bus.
        third = await Watcher.connect(http, base_b.replace("http://", "ws://"), sid, "user_a")
        await third.next("hello")
        assert (await second.next("session"))["state"] == "replaced"
        assert b.app[REALTIME].hub.stats.published["session_ended"] == published
        await third.close()


async def test_a_socket_that_answers_pings_is_kept(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client(ping_interval=0.4)
    base = str(client.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        w = await Watcher.connect(
            http,
            base.replace("http://", "ws://"),
            await start_watch(http, base, "user_a"),
            "user_a",
        )
        await w.next("hello")
        await asyncio.sleep(2.0)  # five intervals of silence from the client, pongs aside
        assert not w.closed
        await w.send({"type": "resume", "epoch": "x", "last_seq": 0})
        await w.next("hello")
        await w.close()


# --- bearer checks ---------------------------------------------------------------------------


async def test_a_cached_bearer_still_expires(client: TestClient[Any, Any]) -> None:
    sid = await _watch(client, "user_a")
    short = {"Authorization": f"Bearer {token('user_a', ttl=2)}"}
    status, _ = await _beat(client, sid, "user_a", short)
    assert status == 200
    await asyncio.sleep(2.2)
    status, body = await _beat(client, sid, "user_a", short)
    assert (status, body["message"]) == (401, "Token expired")
