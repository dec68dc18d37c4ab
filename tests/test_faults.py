"""Faults caused for real: a Redis restart under two instances, a client that stops reading,
SIGTERM. (kill -9 of an instance is in test_multi_instance.)"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import aiohttp
import asyncpg
import psutil
import redis.asyncio as aioredis

from store.embedded import EmbeddedValkey, free_port
from store.keys import Keys
from tests.conftest import ServerFactory, auth
from tests.wsutil import RawSocket, Watcher, admin, start_watch

ENV = {"DROPTV_SESSION_TTL": "3", "DROPTV_VIEWER_INTERVAL": "0.3"}


async def test_redis_restart_resyncs_every_watcher_without_closing_sockets(
    start_server: ServerFactory, demo_db: asyncpg.Pool, redis_prefix: str
) -> None:
    valkey = EmbeddedValkey(port=free_port()).start()
    try:
        env = {**ENV, "DROPTV_REDIS_PREFIX": redis_prefix}
        servers = await asyncio.gather(
            *(start_server(redis_url=valkey.url, env=env) for _ in range(2))
        )
        async with aiohttp.ClientSession() as http:
            watchers = []
            for i in range(4):
                server = servers[i % 2]
                sid = await start_watch(http, server.url, f"user_r{i}")
                watchers.append(await Watcher.connect(http, server.ws_url, sid, f"user_r{i}"))
            hellos = [await w.next("hello") for w in watchers]
            old_epoch = hellos[0]["epoch"]
            assert {h["epoch"] for h in hellos} == {old_epoch}
            await admin(
                http, "PATCH", f"{servers[0].url}/admin/channels/ch_101/live", {"health": "fair"}
            )
            for w in watchers:
                assert (await w.next("stream"))["epoch"] == old_epoch

            valkey.stop()
            await asyncio.sleep(0.5)
            valkey.start()

            fresh = [await w.next("hello", timeout=15) for w in watchers]
            new_epoch = fresh[0]["epoch"]
            assert new_epoch != old_epoch and {h["epoch"] for h in fresh} == {new_epoch}
            assert all(h["stream"]["health"] == "fair" for h in fresh)
            assert not any(w.closed for w in watchers)
            # And the bus carries on: an event from either instance reaches everyone.
            await admin(
                http, "PATCH", f"{servers[1].url}/admin/channels/ch_101/live", {"health": "poor"}
            )
            for w in watchers:
                msg = await w.next("stream", timeout=15)
                assert msg["health"] == "poor" and msg["epoch"] == new_epoch
            assert not any(w.closed for w in watchers)
            for w in watchers:
                await w.close()
    finally:
        valkey.stop()


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def test_a_client_that_stops_reading_is_closed_with_4008(
    start_server: ServerFactory, demo_db: asyncpg.Pool
) -> None:
    soft, hard = 4096, 32768
    server = await start_server(
        env={
            **ENV,
            "DROPTV_WS_SOFT_LIMIT": str(soft),
            "DROPTV_WS_HARD_LIMIT": str(hard),
            "DROPTV_PING_INTERVAL": "20",
        }
    )
    flips = 400
    title = "T" * 190
    async with aiohttp.ClientSession() as http:
        stalled_sid = await start_watch(http, server.url, "user_stall")
        raw = RawSocket.connect(
            server.port,
            f"/creators/creator_001/channel/live/ws?session_id={stalled_sid}",
            auth("user_stall"),
            rcvbuf=4096,
        )
        reader = await Watcher.connect(
            http, server.ws_url, await start_watch(http, server.url, "user_ok"), "user_ok"
        )
        await reader.next("hello")
        rss_before = _rss(server.proc.pid)
        url = f"{server.url}/admin/channels/ch_101/live"
        for i in range(flips):
            await admin(
                http, "PATCH", url, {"health": ("fair", "poor")[i % 2], "title": f"{title}{i:03d}"}
            )
        # The reading client got every event, in order.
        last = await reader.next(
            "stream", where=lambda m: m["title"].endswith(f"{flips - 1:03d}"), timeout=20
        )
        got = [m["title"][-3:] for m in reader.of_type("stream")]
        assert got == [f"{i:03d}" for i in range(flips)] and last["is_live"]
        assert not reader.closed
        grown = _rss(server.proc.pid) - rss_before

        # Now the stalled client reads what reached it: far less than was published,
        # ending with a close frame 4008.
        frames, _ = await asyncio.to_thread(raw.read_frames, 15.0)
        raw.close()
        texts = [json.loads(p) for op, p in frames if op == 0x1]
        closes = [p for op, p in frames if op == 0x8]
        assert texts and texts[0]["type"] == "hello"
        stream_seen = [m for m in texts if m["type"] == "stream"]
        assert 0 < len(stream_seen) < flips // 2
        assert closes and struct.unpack("!H", closes[0][:2])[0] == 4008
        assert frames[-1][0] == 0x8
        # Nothing close to the published volume stayed in the server.
        assert grown < 20 * 1024 * 1024, grown
        await reader.close()


async def test_sigterm_closes_sockets_with_1012_and_releases_leases(
    start_server: ServerFactory, valkey: EmbeddedValkey, redis_prefix: str, demo_db: asyncpg.Pool
) -> None:
    server = await start_server(
        redis_url=valkey.url, env={**ENV, "DROPTV_REDIS_PREFIX": redis_prefix}
    )
    redis = aioredis.Redis.from_url(valkey.url)
    lease = Keys(redis_prefix).lease("ch_101")
    try:
        async with aiohttp.ClientSession() as http:
            watchers: list[Any] = []
            for user in ("user_t1", "user_t2"):
                sid = await start_watch(http, server.url, user)
                watchers.append(await Watcher.connect(http, server.ws_url, sid, user))
            for w in watchers:
                await w.next("hello")
            async with asyncio.timeout(10):
                while await redis.get(lease) is None:
                    await asyncio.sleep(0.1)
            code = await asyncio.to_thread(server.terminate)
            assert code == 0
            for w in watchers:
                assert await w.wait_closed() == 1012
            assert await redis.get(lease) is None
    finally:
        await redis.aclose()
