"""Two real `droptv-live serve` processes, one real Valkey, one PostgreSQL: they behave as one.

- Watchers on different instances get the same channel events: same seq,
  same numbers, byte-identical frames.
- Viewer counts are exact across instances, and a killed instance's sessions
  drop out within session_ttl while the survivor's watchers carry on (the
  survivor takes the publisher lease over).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from store.embedded import EmbeddedValkey
from store.keys import Keys
from tests.conftest import ServerFactory, ServerProcess
from tests.wsutil import Watcher, admin, end_watch, start_watch

CHANNEL_EVENTS = ("viewers", "epg", "stream")
ENV = {"DROPTV_SESSION_TTL": "3", "DROPTV_STREAM_TOKEN_TTL": "30", "DROPTV_VIEWER_INTERVAL": "0.3"}


@dataclass
class Cluster:
    servers: list[ServerProcess]
    http: aiohttp.ClientSession

    async def watch(self, on: int, user: str, *, rest_on: int | None = None, **kw: Any) -> Watcher:
        """POST watch on `rest_on` (default: the same instance), socket on instance `on`."""
        rest = self.servers[on if rest_on is None else rest_on]
        sid = await start_watch(self.http, rest.url, user, **kw)
        return await Watcher.connect(self.http, self.servers[on].ws_url, sid, user)

    async def viewers(self, on: int) -> int:
        async with self.http.get(
            f"{self.servers[on].url}/creators/creator_001/channel/live/viewers"
        ) as r:
            return int((await r.json())["data"]["viewers"]["watching_now"])

    async def settled(self, expected: int, within: float = 2.0) -> None:
        """Both instances report `expected` within `within` seconds: counts may be up to
        viewer_interval (0.3 s here) plus one presence flush old, by design."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            seen = [await self.viewers(0), await self.viewers(1)]
            if seen == [expected, expected]:
                return
            assert asyncio.get_running_loop().time() < deadline, f"{seen} != {expected}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def cluster(
    start_server: ServerFactory, valkey: EmbeddedValkey, redis_prefix: str, demo_db: asyncpg.Pool
) -> AsyncIterator[Cluster]:
    env = {**ENV, "DROPTV_REDIS_PREFIX": redis_prefix}
    servers = list(
        await asyncio.gather(*(start_server(redis_url=valkey.url, env=env) for _ in range(2)))
    )
    async with aiohttp.ClientSession() as http:
        yield Cluster(servers, http)


def channel_events(w: Watcher, after_seq: int) -> list[str]:
    return [
        raw
        for raw, msg in zip(w.raw, w.messages, strict=True)
        if msg["type"] in CHANNEL_EVENTS and msg["seq"] > after_seq
    ]


async def test_watchers_on_both_instances_get_identical_event_sequences(cluster: Cluster) -> None:
    a1 = await cluster.watch(0, "user_a1")
    a2 = await cluster.watch(0, "user_a2", timezone="America/New_York")
    b1 = await cluster.watch(1, "user_b1")
    b2 = await cluster.watch(1, "user_b2", timezone="America/New_York")
    watchers = [a1, a2, b1, b2]
    for w in watchers:
        await w.next("hello")
    await cluster.settled(4)
    await asyncio.sleep(1.0)  # the joins' viewers events are out; compare from here on
    start = max(w.messages[-1]["seq"] for w in watchers)

    base = [s.url for s in cluster.servers]
    for i, health in enumerate(["fair", "poor", "good", "fair"]):
        await admin(
            cluster.http, "PATCH", f"{base[i % 2]}/admin/channels/ch_101/live", {"health": health}
        )
    now = datetime.now(UTC)
    await admin(
        cluster.http,
        "POST",
        f"{base[1]}/admin/channels/ch_101/programs",
        {
            "program_id": "prog_mi",
            "title": "Cross Instance",
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        },
    )
    extra = await cluster.watch(1, "user_c", rest_on=0)  # viewers 4 -> 5
    await extra.next("hello")
    for w in watchers:
        await w.next("viewers", where=lambda m: m["watching_now"] == 5)
    await admin(
        cluster.http,
        "PATCH",
        f"{base[0]}/admin/channels/ch_101/live",
        {"health": "good", "title": "done"},
    )
    for w in watchers:
        await w.next("stream", where=lambda m: m["title"] == "done", timeout=15)

    seen = {id(w): channel_events(w, start) for w in watchers}
    # Same zone: byte-identical frames across instances.
    assert seen[id(a1)] == seen[id(b1)]
    assert seen[id(a2)] == seen[id(b2)]
    types = [json.loads(raw)["type"] for raw in seen[id(a1)]]
    assert types.count("stream") == 5 and types.count("epg") == 1 and "viewers" in types
    seqs = [json.loads(raw)["seq"] for raw in seen[id(a1)]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Other zones see the same events and numbers; only local times differ.
    assert [json.loads(r)["seq"] for r in seen[id(a2)]] == seqs
    ny = next(json.loads(r) for r in seen[id(a2)] if json.loads(r)["type"] == "epg")
    utc = next(json.loads(r) for r in seen[id(a1)] if json.loads(r)["type"] == "epg")
    assert ny["current_program"] == utc["current_program"]
    assert ny["current_program"]["program_id"] == "prog_mi"
    assert {json.loads(r)["epoch"] for r in seen[id(a1)]} == {a1.messages[0]["epoch"]}
    for w in [*watchers, extra]:
        await w.close()


async def test_counts_are_exact_and_a_killed_instance_drops_out(cluster: Cluster) -> None:
    # The first watcher is on instance 1, so instance 1 takes the publisher lease.
    on_b = [await cluster.watch(1, "user_b0")]
    await on_b[0].next("hello")
    await asyncio.sleep(1.5)
    on_a = []
    for i in range(3):
        on_a.append(await cluster.watch(0, f"user_a{i}", rest_on=1))
        on_b.append(await cluster.watch(1, f"user_b{i + 1}", rest_on=0))
    for w in on_a + on_b[1:]:
        await w.next("hello")
    await cluster.settled(7)
    await on_a[0].next("viewers", where=lambda m: m["watching_now"] == 7)

    # Leaves spread over both instances (DELETE on the instance without the socket).
    await end_watch(cluster.http, cluster.servers[1].url, on_a[2].session_id, "user_a2")
    await end_watch(cluster.http, cluster.servers[0].url, on_b[3].session_id, "user_b3")
    await cluster.settled(5)
    for w in (on_a[0], on_b[0]):
        await w.next("viewers", where=lambda m: m["watching_now"] == 5)

    # kill -9 the lease holder: its share of the channel (three sockets) stops being refreshed
    # and expires within session_ttl (3 s here).
    cluster.servers[1].kill()
    msg = await on_a[0].next("viewers", where=lambda m: m["watching_now"] == 2, timeout=15)
    assert msg["delta"] < 0
    assert await cluster.viewers(0) == 2
    # The survivors were not disturbed: same sockets, still served.
    await on_a[1].next("viewers", where=lambda m: m["watching_now"] == 2)
    for w in on_a[:2]:
        assert not w.closed
    await admin(
        cluster.http,
        "PATCH",
        f"{cluster.servers[0].url}/admin/channels/ch_101/live",
        {"health": "fair"},
    )
    for w in on_a[:2]:
        assert (await w.next("stream"))["health"] == "fair"
    for w in on_a + on_b:
        await w.close()


async def test_go_live_and_offline_are_published_once_on_the_bus(
    cluster: Cluster, valkey: EmbeddedValkey, redis_prefix: str
) -> None:
    """No socket can see a go-live (going offline ended every session), so listen on the bus."""
    redis = aioredis.Redis.from_url(valkey.url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(Keys(redis_prefix).bus("ch_101"))
    try:
        w = await cluster.watch(0, "user_x")
        await w.next("hello")
        url = f"{cluster.servers[1].url}/admin/channels/ch_101/live"
        await admin(cluster.http, "DELETE", url)
        assert await w.wait_closed() == 4009
        await admin(cluster.http, "POST", url, {"stream_id": "stream_again", "title": "Back"})
        streams: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while len(streams) < 2:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if msg and b'"type":"stream"' in msg["data"]:
                    streams.append(json.loads(msg["data"].split(b"\n", 1)[1]))
        assert [s["is_live"] for s in streams] == [False, True]
        assert streams[1]["stream_id"] == "stream_again" and streams[1]["seq"] > streams[0]["seq"]
    finally:
        await pubsub.aclose()
        await redis.aclose()
