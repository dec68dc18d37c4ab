"""`--redis-cluster` on a real multi-node Valkey cluster (tests/cluster.py: 3 masters, 3 replicas).

Two real `droptv-live serve` processes with `--redis-cluster`, watchers on both:

- channels whose hash tags put them on different masters all fan out to
  every watcher, each subscription on the master that owns its slot;
- a master killed with SIGKILL fails over to its replica, comes back as a
  replica, and is handed its slots back with CLUSTER FAILOVER: each time the
  watchers get a fresh `hello` and keep receiving, on the same sockets;
- Redis work per channel event is O(instances): one SPUBLISH, one delivery
  per subscribed instance, the same whether 2 or 40 watchers listen.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from protocol.bus import Envelope, unpack
from store.keys import Keys
from tests.cluster import Node, ValkeyCluster, valkey_cluster  # noqa: F401 - the fixture
from tests.conftest import ServerFactory, ServerProcess
from tests.wsutil import Watcher, admin, start_watch

ENV: Final = {"DROPTV_STREAM_TOKEN_TTL": "600", "DROPTV_VIEWER_INTERVAL": "0.3"}
HEALTHS: Final = ("fair", "poor", "good")


@dataclass
class Instances:
    servers: list[ServerProcess]
    http: aiohttp.ClientSession
    keys: Keys

    async def watch(self, on: int, user: str, creator: str, channel: str) -> Watcher:
        base = self.servers[on]
        sid = await start_watch(self.http, base.url, user, creator=creator, channel=channel)
        return await Watcher.connect(self.http, base.ws_url, sid, user, creator=creator)

    async def health(self, on: int, channel: str, health: str) -> None:
        url = f"{self.servers[on].url}/admin/channels/{channel}/live"
        await admin(self.http, "PATCH", url, {"health": health})

    async def metric(self, on: int, name: str) -> float:
        async with self.http.get(f"{self.servers[on].url}/metrics") as resp:
            text = await resp.text()
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


@pytest.fixture
async def instances(
    start_server: ServerFactory,
    valkey_cluster: ValkeyCluster,  # noqa: F811 - the imported fixture
    redis_prefix: str,
    demo_db: asyncpg.Pool,
) -> AsyncIterator[Instances]:
    """Two `serve --redis-cluster` processes, each given a different master to start from.

    The first starts from the master of ch_101, the node the failover test kills, so
    that test also shows a client outliving the node it was configured with.
    """
    await valkey_cluster.wait_settled()
    env = {**ENV, "DROPTV_REDIS_PREFIX": redis_prefix}
    first = await valkey_cluster.master_of(Keys(redis_prefix).bus("ch_101"))
    other = next(n for n in await valkey_cluster.masters() if n is not first)
    urls = [first.url, other.url]
    servers = list(
        await asyncio.gather(
            *(start_server(redis_url=url, env=env, args=["--redis-cluster"]) for url in urls)
        )
    )
    async with aiohttp.ClientSession() as http:
        yield Instances(servers, http, Keys(redis_prefix))


async def shard_subscribers(node: Node, name: str) -> int:
    client = node.client()
    try:
        reply = await client.execute_command("PUBSUB", "SHARDNUMSUB", name)
    finally:
        await client.aclose()
    return int(reply[1])


async def new_live_channel(inst: Instances, suffix: str) -> tuple[str, str]:
    """A creator with a free channel that is live; returns (creator_id, channel_id)."""
    base = inst.servers[0].url
    creator, channel = f"creator_k{suffix}", f"ch_k{suffix}"
    await admin(inst.http, "POST", f"{base}/admin/creators", {"creator_id": creator, "name": "K"})
    await admin(
        inst.http,
        "POST",
        f"{base}/admin/creators/{creator}/channel",
        {
            "channel_id": channel,
            "channel_name": f"K {suffix}",
            "channel_number": 5000 + int(suffix),
        },
    )
    await admin(inst.http, "POST", f"{base}/admin/channels/{channel}/live", {"title": "On"})
    return creator, channel


def streams(w: Watcher) -> list[dict[str, Any]]:
    return w.of_type("stream")


async def test_channels_on_different_masters_reach_every_watcher(
    instances: Instances,
    valkey_cluster: ValkeyCluster,  # noqa: F811
) -> None:
    keys = instances.keys
    # One channel per master: ch_101 from the demo world, then new channels whose
    # hash-tagged bus names land on the masters not covered yet.
    chosen: dict[int, tuple[str, str]] = {}
    home = await valkey_cluster.master_of(keys.bus("ch_101"))
    chosen[home.port] = ("creator_001", "ch_101")
    masters = {n.port for n in await valkey_cluster.masters()}
    for i in range(100, 200):
        if len(chosen) == len(masters):
            break
        node = await valkey_cluster.master_of(keys.bus(f"ch_k{i}"))
        if node.port not in chosen:
            chosen[node.port] = await new_live_channel(instances, str(i))
    assert set(chosen) == masters and len(masters) >= 3
    for _, channel in chosen.values():
        # Everything of a channel shares one slot, so its scripts and its bus are on one shard.
        names = [keys.bus(channel), keys.seq(channel), keys.epoch(channel), keys.lease(channel)]
        assert len({key_slot(n.encode()) for n in names}) == 1

    watchers: dict[str, list[Watcher]] = {}
    for n, (creator, channel) in enumerate(chosen.values()):
        watchers[channel] = [
            await instances.watch(on, f"user_c{n}_{on}", creator, channel) for on in (0, 1)
        ]
    for group in watchers.values():
        for w in group:
            await w.next("hello")
    for port, (_, channel) in chosen.items():
        # Each instance holds one sharded subscription, on the master owning the slot.
        assert await shard_subscribers(valkey_cluster.node(port), keys.bus(channel)) == 2

    for i, health in enumerate(HEALTHS):
        for _, channel in chosen.values():
            await instances.health(i % 2, channel, health)
    for channel, group in watchers.items():
        for w in group:
            await w.next("stream", where=lambda m: m["health"] == HEALTHS[-1])
    for channel, group in watchers.items():
        got = [[(m["seq"], m["health"], m["stream_id"]) for m in streams(w)] for w in group]
        # Same events with the same seq on both instances, in order, none from another channel.
        assert got[0] == got[1]
        assert [h for _, h, _ in got[0]] == list(HEALTHS)
        assert len({s for _, _, s in got[0]}) == 1
        assert [s for s, _, _ in got[0]] == sorted({s for s, _, _ in got[0]})
        assert all(not w.closed for w in group), channel
    for group in watchers.values():
        for w in group:
            await w.close()


async def test_master_failover_and_restart_keep_watchers_receiving(
    instances: Instances,
    valkey_cluster: ValkeyCluster,  # noqa: F811
) -> None:
    keys = instances.keys
    name = keys.bus("ch_101")
    watchers = [await instances.watch(on, f"user_f{on}", "creator_001", "ch_101") for on in (0, 1)]
    for w in watchers:
        await w.next("hello")
    await instances.health(0, "ch_101", "fair")
    for w in watchers:
        await w.next("stream", where=lambda m: m["health"] == "fair")

    async def survives(step: str, health: str, on: int) -> None:
        """After a topology change: a fresh hello on every socket, then events flow again."""
        for w in watchers:
            await w.next("hello", timeout=20)
        await instances.health(on, "ch_101", health)
        for w in watchers:
            await w.next("stream", where=lambda m: m["health"] == health)
        assert all(not w.closed for w in watchers), step

    # 1. Crash the master: its replica takes the slot over.
    master = await valkey_cluster.master_of(name)
    replica = await valkey_cluster.replica_of(master)
    master.kill()
    await valkey_cluster.wait_settled()
    assert (await valkey_cluster.master_of(name)) is replica
    await survives("failover", "poor", 1)
    assert await shard_subscribers(replica, name) == 2

    # 2. The dead master comes back on its port and directory, as the replica's replica.
    master.start()
    view = await valkey_cluster.wait_settled()
    assert view.replicas[master.port] == replica.port
    await instances.health(0, "ch_101", "good")
    for w in watchers:
        await w.next("stream", where=lambda m: m["health"] == "good")

    # 3. Hand the slots back: the demoted node drops its sharded subscribers (SUNSUBSCRIBE).
    view = await valkey_cluster.promote(master)
    assert view.replicas[replica.port] == master.port
    await survives("manual failover", "fair", 0)
    assert await shard_subscribers(master, name) == 2
    for w in watchers:
        assert len(w.of_type("hello")) >= 3
        await w.close()


async def _commandstats(node: Node) -> dict[str, int]:
    client = node.client()
    try:
        info = await client.info("commandstats")
    finally:
        await client.aclose()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def _subscriber_clients(node: Node) -> dict[str, tuple[int, int]]:
    """name-or-id -> (bytes sent to it, commands it sent), for clients with shard subscriptions."""
    client = node.client()
    try:
        rows = await client.client_list()
    finally:
        await client.aclose()
    return {
        row["name"] or row["id"]: (int(row["tot-net-out"]), int(row["tot-cmds"]))
        for row in rows
        if int(row.get("ssub", 0)) > 0
    }


async def _observed(pubsub: Any) -> list[Envelope]:
    """Everything the observer received since the last call (each is one SPUBLISH)."""
    got = []
    while (msg := await pubsub.get_message(timeout=0.2)) is not None:
        if msg["type"] == "smessage":
            got.append(unpack(msg["data"])[0])
    return got


async def test_redis_work_per_event_is_o_instances_not_o_watchers(
    instances: Instances,
    valkey_cluster: ValkeyCluster,  # noqa: F811
) -> None:
    """The same events with 2 and with 40 watchers cost Redis exactly the same."""
    name = instances.keys.bus("ch_101")
    node = await valkey_cluster.master_of(name)
    masters = await valkey_cluster.masters()
    # A third subscriber that only listens: it sees every publish on the channel, and
    # the bytes Redis sends it are exactly one copy of them.
    observer = aioredis.Redis(port=node.port, client_name="observer")
    pubsub = observer.pubsub()
    await pubsub.execute_command("SSUBSCRIBE", name)
    watchers: list[Watcher] = []
    events = 5

    async def phase(per_instance: int) -> dict[str, Any]:
        while len(watchers) < 2 * per_instance:
            on = len(watchers) % 2
            w = await instances.watch(on, f"user_o{len(watchers)}", "creator_001", "ch_101")
            await w.next("hello")
            watchers.append(w)
        await asyncio.sleep(1.0)  # let the joins' viewers events go out first
        await _observed(pubsub)
        cmds_before = [await _commandstats(n) for n in masters]
        subs_before = await _subscriber_clients(node)
        fanout = "droptv_fanout_delay_seconds_count"
        fanout_before = [await instances.metric(on, fanout) for on in (0, 1)]
        seen = [len(streams(w)) for w in watchers]
        for i in range(events):
            await instances.health(i % 2, "ch_101", HEALTHS[i % 3])
        for w, k in zip(watchers, seen, strict=True):
            await w.wait(lambda w=w, k=k: len(streams(w)) >= k + events)  # type: ignore[misc]
        observed = await _observed(pubsub)
        cmds_after = [await _commandstats(n) for n in masters]
        subs_after = await _subscriber_clients(node)
        fanout_after = [await instances.metric(on, fanout) for on in (0, 1)]
        assert set(subs_after) == set(subs_before), "a subscriber reconnected"

        def calls(command: str) -> int:
            return sum(
                a.get(command, 0) - b.get(command, 0)
                for a, b in zip(cmds_after, cmds_before, strict=True)
            )

        def sent(client: str) -> tuple[int, int]:
            (out_a, cmds_a), (out_b, cmds_b) = subs_after[client], subs_before[client]
            return out_a - out_b, cmds_a - cmds_b

        return {
            "watchers": len(watchers),
            "spublish": calls("spublish"),
            "publish": calls("publish"),
            "messages": len(observed),
            "stream_messages": sum(e.type == "stream" for e in observed),
            "subscribers": await shard_subscribers(node, name),
            "observer_bytes": sent("observer")[0],
            "instance_bytes_cmds": [sent(c) for c in sorted(subs_after) if c != "observer"],
            "fanout": [a - b for a, b in zip(fanout_after, fanout_before, strict=True)],
        }

    try:
        few = await phase(1)
        many = await phase(20)
    finally:
        await pubsub.aclose()
        await observer.aclose()
    assert (few["watchers"], many["watchers"]) == (2, 40)
    for got in (few, many):
        # One SPUBLISH per channel event, and no unsharded PUBLISH at all.
        assert got["stream_messages"] == events, got
        assert got["spublish"] == got["messages"] and got["publish"] == 0, got
        # One subscription per instance (plus the observer), however many watchers.
        assert got["subscribers"] == 3 and len(got["instance_bytes_cmds"]) == 2, got
        for out, cmds in got["instance_bytes_cmds"]:
            # Each instance was sent exactly one copy of each message; only replies to
            # its own PINGs (a few bytes per command it sent) may come on top.
            assert got["observer_bytes"] <= out <= got["observer_bytes"] + 32 * cmds, got
        # ... and took each message off the bus once.
        assert got["fanout"] == [got["messages"]] * 2, got
    for w in watchers:
        assert not w.closed
        await w.close()
