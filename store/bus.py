"""The bus between instances: Redis pub/sub, or sharded pub/sub on Redis Cluster.

Contract (shared with store.bus_local, one test suite for both):

- `subscribe(channel)` returns once the subscription is active (or at once if
  the link is down: it is then made on reconnect); `unsubscribe` stops
  delivery. The hub subscribes a channel on its first local watcher and
  unsubscribes after the last.
- `deliver(channel, data)` is called in the bus's reader task, in the order
  Redis sent the messages, with the raw bytes; it must not block.
- A dropped link (Redis restart, network blip, a server that went silent for
  two ping intervals) is reconnected with capped exponential back-off and
  jitter; every wanted channel is resubscribed and, once confirmed,
  `on_reconnect()` is called so the caller can resynchronize its watchers
  (messages published while the link was down are lost, as pub/sub is
  at-most-once). Subscriptions are never silently re-made behind the caller's back.
- Cluster: a channel whose slot moved (failover) is resubscribed on its new
  master and reported through `on_reconnect()` the same way.

One subscriber connection per node (one in total without a cluster), owned by
a reader task; commands (SUBSCRIBE ...) are written from other tasks under a
lock while the reader reads. Publishing uses the shared command client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from protocol.backoff import Backoff
from store.errors import StoreUnavailable
from store.keys import BUS_BACKOFF_MAX, BUS_BACKOFF_MIN, BUS_PING_INTERVAL, Keys
from store.redis_client import make_redis

__all__ = ["Bus", "RedisBus"]

log = logging.getLogger(__name__)

Deliver = Callable[[str, bytes], None]
SUBSCRIBE_TIMEOUT: Final = 5.0
# How long start-up and a first subscribe wait for a link that has never connected.
READY_TIMEOUT: Final = 2.0


class Bus(Protocol):
    reconnects: int

    async def start(self, deliver: Deliver, on_reconnect: Callable[[], None]) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, data: bytes) -> None:
        """Send to every instance subscribed to `channel`; raises StoreUnavailable if it cannot."""
        ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...


class _Link:
    """One subscriber connection (to one node) and the pub/sub names wanted on it."""

    def __init__(
        self, bus: RedisBus, node: str, connect: Callable[[], Awaitable[AbstractConnection]]
    ) -> None:
        self.bus = bus
        self.node = node
        self.names: set[str] = set()
        self._connect = connect
        self._conn: AbstractConnection | None = None
        self._write_lock = asyncio.Lock()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._unsub_asked: Counter[str] = Counter()
        self._resync: set[str] | None = None
        self._owed = False  # names moved here before we connected: report the connect
        self.ready = asyncio.Event()  # set once the first connection is up
        self.task: asyncio.Task[None] | None = None
        sharded = bus.sharded
        self._sub = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self._unsub = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"bus-link-{self.node}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def wait_ready(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)

    async def _send(self, conn: AbstractConnection, *args: Any) -> None:
        async with self._write_lock:
            await conn.send_command(*args, check_health=False)

    async def subscribe(self, name: str) -> None:
        self.names.add(name)
        conn = self._conn
        if conn is None:
            return  # made on (re)connect
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, []).append(waiter)
        try:
            await self._send(conn, self._sub, name)
            await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_TIMEOUT)
        except (RedisError, OSError, TimeoutError) as err:
            # The link is failing: the reader reconnects and resubscribes, then reports it.
            log.warning("subscribe %s not confirmed: %r", name, err)
        finally:
            waiters = self._waiters.get(name)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)

    async def adopt(self, names: list[str]) -> None:
        """Take names whose slot moved here; report a reconnect (events were lost) once active."""
        if self._conn is None:
            self.names.update(names)
            self._owed = True  # subscribed and reported by the connect in _run
            return
        for name in names:
            await self.subscribe(name)
        self.bus._reconnected(self)

    async def unsubscribe(self, name: str) -> None:
        self.names.discard(name)
        conn = self._conn
        if conn is None:
            return
        self._unsub_asked[name] += 1
        try:
            await self._send(conn, self._unsub, name)
        except (RedisError, OSError) as err:
            log.warning("unsubscribe %s failed: %r", name, err)

    async def _run(self) -> None:
        """Connect, resubscribe, read; on any failure back off and do it again. Cancel to stop."""
        failures = 0
        backoff = Backoff(BUS_BACKOFF_MIN, BUS_BACKOFF_MAX)
        ever_connected = False
        while True:
            conn: AbstractConnection | None = None
            try:
                conn = await self._connect()
                self._unsub_asked.clear()
                self._conn = conn
                self.ready.set()
                wanted = set(self.names)
                notify = ever_connected or failures > 0 or self._owed
                self._owed = False
                ever_connected = True
                if wanted:
                    self._resync = set(wanted) if notify else None
                    await self._send(conn, self._sub, *sorted(wanted))
                elif notify:
                    self.bus._reconnected(self)
                failures = 0
                backoff.reset()
                await self._read(conn)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure means: reconnect
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning(
                        "bus link %s to %s down (%r); reconnecting",
                        self.node,
                        re.sub(r"//[^@/]*@", "//***@", self.bus.url),
                        err,
                    )
            finally:
                self._conn = None
                self._resync = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
            await asyncio.sleep(backoff.next())
            if not await self.bus._before_reconnect(self):
                return  # retired: its names live on other nodes now

    async def _read(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        interval = self.bus.ping_interval
        last_rx = loop.time()
        while True:
            response = await conn.read_response(timeout=interval, disconnect_on_error=True)
            now = loop.time()
            if response is None:
                if now - last_rx > 2 * interval:
                    raise ConnectionError(f"no reply from {self.node} for {now - last_rx:.1f}s")
                await self._send(conn, "PING")
                continue
            last_rx = now
            self._handle(response)

    def _handle(self, response: Any) -> None:
        if not isinstance(response, list) or not response:
            return  # PONG outside subscribed mode
        kind = response[0]
        if kind in (b"message", b"smessage"):
            channel = self.bus.keys.bus_channel_of(response[1].decode())
            if channel is not None:
                self.bus._deliver(channel, response[2])
        elif kind in (b"subscribe", b"ssubscribe"):
            name = response[1].decode()
            for waiter in self._waiters.pop(name, ()):
                if not waiter.done():
                    waiter.set_result(None)
            if self._resync is not None:
                self._resync.discard(name)
                if not self._resync:
                    self._resync = None
                    self.bus._reconnected(self)
        elif kind == b"sunsubscribe":
            name = response[1].decode()
            if self._unsub_asked[name] > 0:
                self._unsub_asked[name] -= 1
            elif name in self.names:
                # The server dropped us: the slot moved to another node. Reconnect
                # (and re-home the name) rather than silently stop receiving.
                raise ConnectionError(f"{name} unsubscribed by the server (slot moved)")


class RedisBus:
    """Pub/sub on `url`; `sharded` uses SSUBSCRIBE/SPUBLISH, `cluster` talks to a Redis Cluster."""

    def __init__(
        self,
        url: str,
        keys: Keys,
        *,
        redis: Any | None = None,
        sharded: bool = False,
        cluster: bool = False,
        ping_interval: float = BUS_PING_INTERVAL,
    ) -> None:
        self.url = url
        self.keys = keys
        self.sharded = sharded or cluster
        self.cluster = cluster
        self.ping_interval = ping_interval
        self.reconnects = 0
        self._redis = redis if redis is not None else make_redis(url, cluster=cluster)
        self._owns_redis = redis is None
        self._links: dict[str, _Link] = {}
        self._home: dict[str, _Link] = {}
        self._deliver_cb: Deliver | None = None
        self._on_reconnect: Callable[[], None] | None = None
        self._closed = False
        # RESP2: pub/sub messages are plain replies read by our reader, not push
        # notifications diverted to a handler.
        pool = aioredis.ConnectionPool.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2.0,
            socket_keepalive=True,
            protocol=2,
        )
        self._conn_class: type[AbstractConnection] = pool.connection_class
        self._conn_kwargs: dict[str, Any] = dict(pool.connection_kwargs)
        if cluster:
            self._conn_kwargs.pop("db", None)

    async def start(self, deliver: Deliver, on_reconnect: Callable[[], None]) -> None:
        self._deliver_cb = deliver
        self._on_reconnect = on_reconnect
        if self.cluster:
            try:
                await self._redis.initialize()
            except (RedisError, OSError) as err:
                raise StoreUnavailable(f"redis cluster: {err!r}") from err
        else:
            # Wait briefly for the link so that early subscribers get confirmed
            # subscriptions; with Redis down, carry on and connect in the background.
            await self._link("main").wait_ready(READY_TIMEOUT)

    async def close(self) -> None:
        self._closed = True
        for link in list(self._links.values()):
            await link.stop()
        self._links.clear()
        self._home.clear()
        if self._owns_redis:
            await self._redis.aclose()

    @property
    def connected(self) -> bool:
        return bool(self._links) and all(link._conn is not None for link in self._links.values())

    async def publish(self, channel: str, data: bytes) -> None:
        name = self.keys.bus(channel)
        try:
            if self.sharded:
                await self._redis.spublish(name, data)
            else:
                await self._redis.publish(name, data)
        except (RedisError, OSError) as err:
            raise StoreUnavailable(f"redis publish: {err!r}") from err

    async def subscribe(self, channel: str) -> None:
        name = self.keys.bus(channel)
        link = self._home.get(name) or self._link_for(name)
        self._home[name] = link
        if not link.ready.is_set():
            await link.wait_ready(READY_TIMEOUT)
        await link.subscribe(name)

    async def unsubscribe(self, channel: str) -> None:
        name = self.keys.bus(channel)
        link = self._home.pop(name, None)
        if link is not None:
            await link.unsubscribe(name)

    # --- links ---------------------------------------------------------------------------

    def _node_of(self, name: str) -> tuple[str, str, int]:
        node = self._redis.get_node_from_key(name)
        return node.name, node.host, node.port

    def _link_for(self, name: str) -> _Link:
        if not self.cluster:
            return self._links["main"]
        node, host, port = self._node_of(name)
        return self._link(node, host, port)

    def _link(self, node: str, host: str | None = None, port: int | None = None) -> _Link:
        link = self._links.get(node)
        if link is None:
            link = _Link(self, node, lambda: self._open(host, port))
            self._links[node] = link
            link.start()
        return link

    async def _open(self, host: str | None, port: int | None) -> AbstractConnection:
        """A fresh subscriber connection that never retries on its own (we do, visibly)."""
        kwargs = dict(self._conn_kwargs)
        if host is not None:
            kwargs.update(host=host, port=port)
        conn: AbstractConnection = self._conn_class(**kwargs)
        await conn.connect()  # type: ignore[no-untyped-call]
        return conn

    async def _before_reconnect(self, link: _Link) -> bool:
        """Cluster: refresh the slot map and move names whose slot moved to their new node.

        False: the link lost all its names and is retired (else a dead master's link
        retries forever and reports a spurious reconnect when it returns as a replica).
        """
        if not self.cluster or self._closed:
            return True
        try:
            await self._redis.nodes_manager.initialize()
        except (RedisError, OSError) as err:
            log.warning("cluster topology refresh failed: %r", err)
            return True
        moved: dict[_Link, list[str]] = {}
        for name in sorted(link.names):
            node, host, port = self._node_of(name)
            if node != link.node:
                link.names.discard(name)
                target = self._link(node, host, port)
                self._home[name] = target
                moved.setdefault(target, []).append(name)
        for target, names in moved.items():
            await target.adopt(names)
        if moved and not link.names and self._links.get(link.node) is link:
            del self._links[link.node]
            return False
        return True

    def _deliver(self, channel: str, data: bytes) -> None:
        if self._deliver_cb is not None:
            self._deliver_cb(channel, data)

    def _reconnected(self, link: _Link) -> None:
        self.reconnects += 1
        log.info("bus link %s reconnected; %d channels resubscribed", link.node, len(link.names))
        if self._on_reconnect is not None:
            self._on_reconnect()
