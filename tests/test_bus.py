"""The bus contract, run against the in-process bus, Redis pub/sub and sharded pub/sub.

Every case uses real backends: the session Valkey (its own key prefix per
test), and for the restart case a Valkey of its own that is stopped and
started again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from store.bus import Bus, RedisBus
from store.bus_local import LocalBroker, LocalBus
from store.embedded import EmbeddedValkey, free_port
from store.keys import Keys

KINDS = ["local", "redis", "sharded"]


class Recorder:
    """What one bus instance delivered, in order, plus its reconnect notifications."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.reconnects = 0
        self._changed = asyncio.Event()

    def deliver(self, channel: str, data: bytes) -> None:
        self.got.append((channel, data))
        self._changed.set()

    def reconnected(self) -> None:
        self.reconnects += 1
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


BusFactory = Callable[[], Any]


@pytest.fixture(params=KINDS)
async def make_bus(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[BusFactory]:
    """Start buses of one kind that see each other (one broker / one Redis)."""
    kind: str = request.param
    broker = LocalBroker()
    started: list[tuple[Bus, Recorder]] = []

    async def factory() -> tuple[Bus, Recorder]:
        bus: Bus
        if kind == "local":
            bus = LocalBus(broker)
        else:
            valkey: EmbeddedValkey = request.getfixturevalue("valkey")
            bus = RedisBus(valkey.url, Keys(redis_prefix), sharded=kind == "sharded")
        rec = Recorder()
        await bus.start(rec.deliver, rec.reconnected)
        started.append((bus, rec))
        return bus, rec

    yield factory
    for bus, _ in started:
        await bus.close()


async def test_delivers_raw_bytes_in_order(make_bus: BusFactory) -> None:
    bus, rec = await make_bus()
    await bus.subscribe("ch_1")
    payloads = [b'{"h":1}\n' + bytes([i]) * i + b"\x00\xff\n" for i in range(50)]
    for p in payloads:
        await bus.publish("ch_1", p)
    await rec.wait_for(lambda: len(rec.got) == 50)
    assert rec.got == [("ch_1", p) for p in payloads]


async def test_only_subscribed_channels_reach_an_instance(make_bus: BusFactory) -> None:
    a, rec_a = await make_bus()
    b, rec_b = await make_bus()
    await a.subscribe("ch_1")
    await b.subscribe("ch_2")
    await a.publish("ch_2", b"for b")
    await b.publish("ch_1", b"for a")
    await rec_a.wait_for(lambda: len(rec_a.got) == 1)
    await rec_b.wait_for(lambda: len(rec_b.got) == 1)
    assert rec_a.got == [("ch_1", b"for a")]
    assert rec_b.got == [("ch_2", b"for b")]


async def test_every_subscribed_instance_gets_each_message_once(make_bus: BusFactory) -> None:
    buses = [await make_bus() for _ in range(3)]
    for bus, _ in buses:
        await bus.subscribe("ch_1")
    await buses[0][0].publish("ch_1", b"one")
    await buses[2][0].publish("ch_1", b"two")
    for _, rec in buses:
        await rec.wait_for(lambda r=rec: len(r.got) == 2)  # type: ignore[misc]
    await asyncio.sleep(0.1)
    for _, rec in buses:
        assert rec.got == [("ch_1", b"one"), ("ch_1", b"two")]


async def test_unsubscribe_stops_delivery(make_bus: BusFactory) -> None:
    a, rec_a = await make_bus()
    b, rec_b = await make_bus()
    await a.subscribe("ch_1")
    await b.subscribe("ch_1")
    await a.unsubscribe("ch_1")
    await b.publish("ch_1", b"after")
    await rec_b.wait_for(lambda: len(rec_b.got) == 1)
    await asyncio.sleep(0.2)
    assert rec_a.got == []
    # Subscribing again works (first watcher back on this instance).
    await a.subscribe("ch_1")
    await b.publish("ch_1", b"again")
    await rec_a.wait_for(lambda: len(rec_a.got) == 1)
    assert rec_a.got == [("ch_1", b"again")]


async def test_subscribe_is_active_when_it_returns(make_bus: BusFactory) -> None:
    """No sleep between subscribe and publish: the first message must arrive."""
    a, rec_a = await make_bus()
    b, _ = await make_bus()
    for i in range(5):
        await a.subscribe(f"ch_{i}")
        await b.publish(f"ch_{i}", b"x")
    await rec_a.wait_for(lambda: len(rec_a.got) == 5)


@pytest.mark.parametrize("sharded", [False, True], ids=["pubsub", "sharded"])
async def test_redis_restart_reconnects_resubscribes_and_notifies(
    redis_prefix: str, sharded: bool
) -> None:
    server = EmbeddedValkey(port=free_port()).start()
    try:
        bus = RedisBus(server.url, Keys(redis_prefix), sharded=sharded, ping_interval=0.5)
        rec = Recorder()
        await bus.start(rec.deliver, rec.reconnected)
        try:
            await bus.subscribe("ch_1")
            await bus.subscribe("ch_2")
            await bus.publish("ch_1", b"before")
            await rec.wait_for(lambda: len(rec.got) == 1)

            server.stop()
            with contextlib.suppress(Exception):
                await bus.publish("ch_1", b"lost while down")
            await asyncio.sleep(0.3)
            server.start()

            await rec.wait_for(lambda: rec.reconnects == 1)
            assert bus.reconnects == 1
            # Resubscribed to both channels before the notification.
            await bus.publish("ch_1", b"after-1")
            await bus.publish("ch_2", b"after-2")
            await rec.wait_for(lambda: len(rec.got) == 3)
            assert rec.got == [("ch_1", b"before"), ("ch_1", b"after-1"), ("ch_2", b"after-2")]
        finally:
            await bus.close()
    finally:
        server.stop()


async def test_redis_down_at_start_connects_later(redis_prefix: str) -> None:
    port = free_port()
    bus = RedisBus(f"redis://127.0.0.1:{port}/0", Keys(redis_prefix), ping_interval=0.5)
    rec = Recorder()
    start = asyncio.create_task(bus.start(rec.deliver, rec.reconnected))
    server = None
    try:
        await asyncio.sleep(0.3)
        await bus.subscribe("ch_1")  # wanted while down: made on connect
        server = EmbeddedValkey(port=port).start()
        await start
        await rec.wait_for(lambda: rec.reconnects == 1)
        await bus.publish("ch_1", b"hi")
        await rec.wait_for(lambda: len(rec.got) == 1)
    finally:
        await bus.close()
        if server is not None:
            server.stop()


# --- Redis Cluster (a real one-node cluster: every slot on one Valkey) ----------------------


@pytest.fixture
def cluster_url(tmp_path: Any) -> Iterator[str]:
    import subprocess
    import time

    import redis

    from store.embedded import _valkey_binary

    port = free_port()
    # The cluster bus port defaults to port + 10000, which may not exist: pick one.
    proc = subprocess.Popen(
        [
            _valkey_binary(),
            "--port",
            str(port),
            "--cluster-port",
            str(free_port()),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(tmp_path / "nodes.conf"),
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        admin = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "valkey did not start"
                time.sleep(0.05)
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "cluster did not become ok"
            time.sleep(0.05)
        admin.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


async def test_cluster_mode_uses_sharded_pubsub_and_scripts(
    cluster_url: str, redis_prefix: str
) -> None:
    from store.lease import RedisLeases, RedisSequencer
    from store.redis_client import make_redis

    keys = Keys(redis_prefix)
    client = make_redis(cluster_url, cluster=True)
    buses = [RedisBus(cluster_url, keys, redis=client, cluster=True) for _ in range(2)]
    recs = [Recorder() for _ in buses]
    try:
        for bus, rec in zip(buses, recs, strict=True):
            await bus.start(rec.deliver, rec.reconnected)
            await bus.subscribe("ch_1")
        await buses[0].publish("ch_1", b"sharded")
        for rec in recs:
            await rec.wait_for(lambda r=rec: r.got == [("ch_1", b"sharded")])  # type: ignore[misc]
        seq = RedisSequencer(client, keys)
        assert (await seq.next("ch_1")).seq == 1
        assert (await seq.next_if_changed("ch_1", "viewers", "3,3")) is not None
        leases = RedisLeases(client, keys)
        assert await leases.acquire("ch_1", "a", 5.0) and not await leases.acquire("ch_1", "b", 5.0)
    finally:
        for bus in buses:
            await bus.close()
        await client.aclose()


async def test_an_app_in_cluster_mode_fans_out_through_the_cluster(
    cluster_url: str, redis_prefix: str, make_client: Any, demo_db: Any
) -> None:
    """`--redis-cluster`: the whole real-time path (hello, events) over sharded pub/sub."""
    import aiohttp

    from tests.wsutil import Watcher, admin, start_watch

    apps = [
        await make_client(redis_url=cluster_url, redis_cluster=True, redis_prefix=redis_prefix)
        for _ in range(2)
    ]
    bases = [str(app.make_url("")).rstrip("/") for app in apps]
    async with aiohttp.ClientSession() as http:
        watchers = []
        for i, base in enumerate(bases):
            sid = await start_watch(http, base, f"user_k{i}")
            watchers.append(
                await Watcher.connect(http, base.replace("http", "ws"), sid, f"user_k{i}")
            )
        for w in watchers:
            await w.next("hello")
        await admin(http, "PATCH", f"{bases[0]}/admin/channels/ch_101/live", {"health": "poor"})
        got = [await w.next("stream") for w in watchers]
        assert got[0] == got[1] and got[0]["health"] == "poor"
        for w in watchers:
            await w.close()
