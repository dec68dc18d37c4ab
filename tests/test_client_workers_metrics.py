"""The client library across a drain, `serve --workers N`, and /metrics — all on real processes."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import asyncpg

from droptv_live_client import LiveClient, LiveClosed
from store.embedded import EmbeddedValkey
from tests.conftest import ServerFactory, token
from tests.wsutil import Watcher, admin, start_watch

ENV = {"DROPTV_SESSION_TTL": "5", "DROPTV_VIEWER_INTERVAL": "0.3"}


async def _next_of(it: Any, type_: str, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            msg: dict[str, Any] = await anext(it)
            if msg["type"] == type_:
                return msg


async def test_client_moves_to_the_other_instance_on_drain_and_keeps_receiving(
    start_server: ServerFactory, valkey: EmbeddedValkey, redis_prefix: str, demo_db: asyncpg.Pool
) -> None:
    env = {**ENV, "DROPTV_REDIS_PREFIX": redis_prefix}
    first = await start_server(redis_url=valkey.url, env=env)
    second = await start_server(redis_url=valkey.url, env=env)
    async with aiohttp.ClientSession() as http:
        sid = await start_watch(http, first.url, "user_client")
        client = LiveClient(
            [first.url, second.url], "creator_001", sid, token("user_client"), backoff_initial=0.05
        )
        async with client:
            it = aiter(client)
            hello = await _next_of(it, "hello")
            assert hello["session"]["session_id"] == sid
            epoch = client.epoch
            await admin(
                http, "PATCH", f"{second.url}/admin/channels/ch_101/live", {"health": "fair"}
            )
            before = await _next_of(it, "stream")
            assert before["health"] == "fair"

            assert await asyncio.to_thread(first.terminate) == 0
            again = await _next_of(it, "hello")  # from the second instance, after the drain
            assert client.last_close_code == 1012
            assert client.connects == 2
            assert client.current_url == second.url
            assert again["epoch"] == epoch and again["seq"] >= before["seq"]

            await admin(
                http, "PATCH", f"{second.url}/admin/channels/ch_101/live", {"health": "poor"}
            )
            after = await _next_of(it, "stream")
            assert after["health"] == "poor"
            assert after["seq"] > before["seq"]


async def test_client_stops_for_good_on_a_terminal_close(
    start_server: ServerFactory, demo_db: asyncpg.Pool
) -> None:
    server = await start_server(env=ENV)
    async with aiohttp.ClientSession() as http:
        sid = await start_watch(http, server.url, "user_client")
    client = LiveClient(server.url, "creator_001", sid, token("someone_else"))
    try:
        await client.connect()
        await _next_of(aiter(client), "hello")
        raise AssertionError("another user's session must be refused")
    except LiveClosed as closed:
        assert closed.code == 4003
    finally:
        await client.close()


async def test_workers_share_one_port_and_drain_on_sigterm(
    start_server: ServerFactory, demo_db: asyncpg.Pool
) -> None:
    """No Redis URL: the supervisor starts an embedded Valkey and both workers join through it."""
    server = await start_server(env=ENV, args=["--workers", "2"])
    pids: set[int] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        async with asyncio.timeout(30):
            while len(pids) < 2:
                async with http.get(server.url + "/healthz") as resp:
                    pids.add((await resp.json())["pid"])
        assert server.proc.pid not in pids

        # Watchers land on both workers, yet a change made anywhere reaches all of them.
        watchers = []
        for n in range(6):
            sid = await start_watch(http, server.url, f"user_w{n}")
            watchers.append(await Watcher.connect(http, server.ws_url, sid, f"user_w{n}"))
        for w in watchers:
            await w.next("hello")
        await admin(http, "PATCH", f"{server.url}/admin/channels/ch_101/live", {"health": "poor"})
        seqs = {
            (await w.next("stream", where=lambda m: m["health"] == "poor"))["seq"] for w in watchers
        }
        assert len(seqs) == 1

        assert await asyncio.to_thread(server.terminate) == 0
        for w in watchers:
            assert await w.wait_closed() == 1012


def _sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} missing from /metrics"
    return float(match.group(1))


async def test_metrics_count_sockets_messages_and_fanout_delay(
    start_server: ServerFactory, demo_db: asyncpg.Pool
) -> None:
    server = await start_server(env=ENV)
    async with aiohttp.ClientSession() as http:
        sid = await start_watch(http, server.url, "user_m")
        watcher = await Watcher.connect(http, server.ws_url, sid, "user_m")
        await watcher.next("hello")
        await admin(http, "PATCH", f"{server.url}/admin/channels/ch_101/live", {"health": "fair"})
        await watcher.next("stream")
        async with http.get(server.url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        assert _sample(text, "droptv_ws_sockets_open") == 1
        assert _sample(text, "droptv_ws_messages_sent_total", '{type="hello"}') == 1
        assert _sample(text, "droptv_ws_messages_sent_total", '{type="stream"}') >= 1
        assert _sample(text, "droptv_fanout_delay_seconds_count") >= 1
        assert _sample(text, "droptv_ws_slow_consumer_closes_total") == 0
        assert _sample(text, "droptv_ws_ping_timeouts_total") == 0
        await watcher.close()
