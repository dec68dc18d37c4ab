"""A reconnect storm: kill -9 an instance holding many watchers; they all come back to the
survivor with the client library, resume, and are counted exactly within session_ttl.

The watchers' presence lived in the dead instance's share, which nobody
refreshes any more: it expires within session_ttl, while the survivor's
share grows as the sockets arrive (their connects are claimed in batches,
not one statement each). Bounded: WATCHERS sockets, every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import aiohttp
import asyncpg

from droptv_live_client import LiveClient
from store.embedded import EmbeddedValkey
from tests.conftest import ServerFactory, auth, token

WATCHERS = int(os.environ.get("DROPTV_STORM_WATCHERS", "1500"))
SESSION_TTL = 4.0
ENV = {
    "DROPTV_SESSION_TTL": str(SESSION_TTL),
    "DROPTV_VIEWER_INTERVAL": "0.3",
    "DROPTV_STREAM_TOKEN_TTL": "600",
}


async def _viewers(http: aiohttp.ClientSession, base: str) -> int:
    async with http.get(f"{base}/creators/creator_001/channel/live/viewers") as resp:
        return int((await resp.json())["data"]["viewers"]["watching_now"])


async def _session(http: aiohttp.ClientSession, base: str, user: str) -> str:
    async with http.post(
        f"{base}/creators/creator_001/channel/live/watch",
        headers=auth(user),
        json={"channel_id": "ch_101", "device_type": "web"},
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["data"]["session"]["session_id"])


async def _watch(client: LiveClient, hellos: list[int], index: int) -> None:
    """Read until cancelled, counting `hello`s (one per connect or resume answered)."""
    async for msg in client:
        if msg["type"] == "hello":
            hellos[index] += 1


async def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_watchers_of_a_killed_instance_come_back_and_are_counted_exactly(
    start_server: ServerFactory,
    valkey: EmbeddedValkey,
    redis_prefix: str,
    demo_db: asyncpg.Pool,
) -> None:
    env = {**ENV, "DROPTV_REDIS_PREFIX": redis_prefix}
    victim, survivor = await asyncio.gather(
        start_server(redis_url=valkey.url, env=env), start_server(redis_url=valkey.url, env=env)
    )
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sem = asyncio.Semaphore(64)

        async def make(i: int) -> str:
            async with sem:
                return await _session(http, (victim, survivor)[i % 2].url, f"storm_{i}")

        sessions = await asyncio.gather(*(make(i) for i in range(WATCHERS)))
        clients = [
            LiveClient(
                [victim.url, survivor.url],
                "creator_001",
                sid,
                token(f"storm_{i}"),
                backoff_initial=0.05,
                backoff_max=1.0,
                http=http,
            )
            for i, sid in enumerate(sessions)
        ]
        hellos = [0] * WATCHERS
        readers = [
            asyncio.create_task(_watch(c, hellos, i), name=f"storm-{i}")
            for i, c in enumerate(clients)
        ]
        try:
            await _until(lambda: _all(hellos, 1), 60, "every watcher's first hello")
            assert {c.current_url for c in clients} == {victim.url}
            await _until(
                lambda: _counted(http, survivor.url, WATCHERS), 10, "the count of all watchers"
            )

            victim.kill()
            killed = time.monotonic()
            await _until(lambda: _all(hellos, 2), 60, "every watcher back with a hello")
            back = time.monotonic() - killed
            assert {c.current_url for c in clients} == {survivor.url}
            from collections import Counter

            print(Counter(c.connects for c in clients), Counter(c.last_close_code for c in clients))
            assert all(c.connects == 2 for c in clients)
            # Exact once the dead instance's share has expired: within session_ttl of the kill.
            await _until(
                lambda: _counted(http, survivor.url, WATCHERS),
                max(1.0, SESSION_TTL + 2.0 - (time.monotonic() - killed)),
                "the exact count after the storm",
            )
            print(f"{WATCHERS} watchers back in {back:.1f} s")
        finally:
            if os.environ.get("STORM_DEBUG"):
                print(survivor.log()[-6000:])
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for c in clients:
                with contextlib.suppress(Exception):
                    await c.close()


async def _all(hellos: list[int], n: int) -> bool:
    return min(hellos) >= n


async def _counted(http: aiohttp.ClientSession, base: str, expected: int) -> bool:
    return await _viewers(http, base) == expected
