"""A lightweight websocket load generator: thousands of watchers per process, on uvloop.

Each watcher is a raw `asyncio.Protocol` that performs the HTTP upgrade itself
and parses server frames (unmasked, uncompressed text frames; FIN and
continuation handled), with no framework per connection. It answers pings with
masked pongs and close frames with a close, as a client must.

Receive times: one `time.time()` per `data_received` call, taken before any
parsing, so the latency `receive − ts` counts the kernel and loop delay but not
our own parsing. Every server message carries `type`, `epoch`, `seq` and `ts`
(DESIGN.md §4); messages of the channel-event types are counted per
(epoch, seq) per watcher, so the parent can report missed and duplicated
deliveries and, per broadcast, when the last watcher had it.

`LoadGen` (parent side) spreads watchers over several client processes and
talks to them over pipes with a strict command → reply protocol:
connect, measure(t0), collect(t_end), close. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing as mp
import os
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final, Self

import msgspec
import numpy as np

from bench._frames import next_frame
from bench._harness import (
    merged_counts,
    merged_latencies,
    own_cpu_seconds,
    percentiles,
    raise_nofile,
)

# Types that are channel events: one per (epoch, seq), the same on every instance and watcher.
CHANNEL_TYPES: Final = frozenset({"viewers", "epg", "stream"})
REPLY_TIMEOUT: Final = 600.0
_MASK: Final = b"\x00\x00\x00\x00"  # a zero mask is legal and keeps pongs cheap to build


class _Head(msgspec.Struct):
    """The four fields every server message carries; the rest of the message is ignored."""

    type: str = ""
    epoch: int | str = 0
    seq: int = -1
    ts: float = 0.0


_decode_head = msgspec.json.Decoder(_Head).decode


@dataclass(frozen=True, slots=True)
class Target:
    """One watcher: where to connect and what to request."""

    host: str
    port: int
    path: str
    protocol: str = "droptv.live.v1"


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.3: clients must mask); payloads here are < 126 bytes."""
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + _MASK + payload


CLOSE_NORMAL: Final = _client_frame(0x8, (1000).to_bytes(2, "big"))


class _Stats:
    """Per-process counters shared by every watcher of the process."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.measuring = False
        self.t0 = 0.0
        self.lat = array("d")  # receive − ts, seconds, one per delivery in the window
        self.lat_ts = array("d")  # the delivery's ts, to cut the window at t_end
        self.per_seq: dict[tuple[Any, int], list[Any]] = {}  # key → [count, last_recv, ts, type]
        self.dups = 0
        self.hellos_in_window = 0
        self.other: Counter[str] = Counter()
        self.closes: Counter[int] = Counter()
        self.pings = 0
        self.last_payload = b""
        self.last_head = _Head()
        self.last_key: tuple[Any, int] = (0, -1)

    def new_window(self, t0: float) -> None:
        """Start a measured window at `t0`: what earlier windows counted is forgotten
        (closes, pings and other messages stay cumulative)."""
        self.t0 = t0
        self.measuring = True
        self.lat = array("d")
        self.lat_ts = array("d")
        self.per_seq = {}
        self.dups = 0
        self.hellos_in_window = 0


class Watcher(asyncio.Protocol):
    """One websocket connection: HTTP upgrade, then frame parsing and bookkeeping."""

    __slots__ = (
        "buf",
        "closed",
        "frag",
        "ready",
        "ready_on",
        "seen",
        "stats",
        "status",
        "t_ready",
        "t_start",
        "target",
        "transport",
        "upgraded",
    )

    def __init__(
        self, target: Target, stats: _Stats, ready_on: str, ready: asyncio.Future[None]
    ) -> None:
        self.target = target
        self.stats = stats
        self.ready_on = ready_on
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False
        self.status = 0
        self.seen: set[tuple[Any, int]] = set()
        self.frag: bytearray | None = None
        self.closed: int | None = None
        self.t_start = time.time()
        self.t_ready = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport
        self.transport = tr
        key = base64.b64encode(os.urandom(16)).decode()
        t = self.target
        tr.write(
            f"GET {t.path} HTTP/1.1\r\nHost: {t.host}:{t.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {t.protocol}\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is None:
            self.closed = 1006
            if self.upgraded:
                self.stats.closes[1006] += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready (status {self.status})"))

    def _mark_ready(self) -> None:
        if not self.ready.done():
            self.t_ready = time.time()
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            head = data[:end]
            data = data[end + 4 :]
            try:
                self.status = int(head.split(b" ", 2)[1])
            except (IndexError, ValueError):
                self.status = -1
            if self.status != 101:
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded = True
            if self.ready_on == "upgrade":
                self._mark_ready()
        pos = 0
        # A masked server frame is a protocol error, but next_frame parses past it.
        while (frame := next_frame(data, pos)) is not None:
            b0, start, pos = frame
            self._frame(b0, data[start:pos], now)
        if pos < len(data):
            self.buf = data[pos:]

    def _frame(self, b0: int, payload: bytes, now: float) -> None:
        opcode = b0 & 0x0F
        fin = b0 & 0x80
        if opcode == 0x1 or (opcode == 0x0 and self.frag is not None):
            if not fin:
                self.frag = (self.frag or bytearray()) + payload
                return
            if self.frag is not None:
                payload = bytes(self.frag + payload)
                self.frag = None
            self._message(payload, now)
        elif opcode == 0x9:
            self.stats.pings += 1
            assert self.transport is not None
            if len(payload) < 126:
                self.transport.write(_client_frame(0xA, payload))
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.closed = code
            self.stats.closes[code] += 1
            assert self.transport is not None
            if not self.transport.is_closing():
                self.transport.write(_client_frame(0x8, payload[:2]))
                self.transport.close()

    def _message(self, payload: bytes, now: float) -> None:
        stats = self.stats
        # Every watcher of an instance gets the very same bytes: decode each distinct payload once.
        if payload == stats.last_payload:
            head = stats.last_head
        else:
            try:
                head = _decode_head(payload)
            except msgspec.MsgspecError:
                stats.other["undecodable"] += 1
                return
            stats.last_payload = payload
            stats.last_head = head
            # One key object shared by every watcher: their `seen` sets cost a slot, not a tuple.
            stats.last_key = (head.epoch, head.seq)
        kind = head.type
        if kind in CHANNEL_TYPES:
            if not stats.measuring or head.ts < stats.t0:
                return
            key = stats.last_key
            if key in self.seen:
                stats.dups += 1
                return
            self.seen.add(key)
            stats.lat.append(now - head.ts)
            stats.lat_ts.append(head.ts)
            rec = stats.per_seq.get(key)
            if rec is None:
                stats.per_seq[key] = [1, now, head.ts, kind]
            else:
                rec[0] += 1
                rec[1] = max(rec[1], now)
        elif kind == "hello":
            if stats.measuring:
                stats.hellos_in_window += 1
            self._mark_ready()
        else:
            stats.other[kind] += 1

    def close(self) -> None:
        if self.closed is None:
            self.closed = 1000
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(CLOSE_NORMAL)
            self.transport.close()


# -- client process ---------------------------------------------------------------------------


async def _connect_all(
    targets: list[Target], stats: _Stats, ready_on: str, concurrency: int, timeout: float
) -> tuple[list[Watcher], dict[str, Any]]:
    loop = asyncio.get_running_loop()
    # concurrency <= 0: every connect at once (a reconnect storm).
    sem = asyncio.Semaphore(concurrency if concurrency > 0 else max(len(targets), 1))
    watchers: list[Watcher] = []
    errors: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    deadline = loop.time() + timeout

    async def one(target: Target) -> None:
        async with sem:
            left = deadline - loop.time()
            if left <= 0:
                errors["deadline"] += 1
                return
            ready: asyncio.Future[None] = loop.create_future()
            watcher = Watcher(target, stats, ready_on, ready)
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: watcher, target.host, target.port), left
                )
                await asyncio.wait_for(ready, max(deadline - loop.time(), 0.01))
            except (TimeoutError, OSError, ConnectionError) as err:
                # A socket the server closed before its hello: say with which close code.
                closed = f" (close {watcher.closed})" if watcher.closed is not None else ""
                errors[type(err).__name__ + closed] += 1
                statuses[watcher.status] += 1
                watcher.close()
                return
            watchers.append(watcher)

    t0 = time.time()
    cpu0 = own_cpu_seconds()
    await asyncio.gather(*(one(t) for t in targets))
    ready_times = [w.t_ready for w in watchers]
    waits = array("d", (w.t_ready - w.t_start for w in watchers))
    report = {
        "waits": waits.tobytes(),
        "ok": len(watchers),
        "failed": sum(errors.values()),
        "errors": dict(errors),
        "statuses": {str(k): v for k, v in statuses.items()},
        "t_first_start": t0,
        "t_last_ready": max(ready_times) if ready_times else t0,
        "cpu_s": own_cpu_seconds() - cpu0,
    }
    return watchers, report


async def _client_main(conn: Connection) -> None:
    """Serve the parent's commands until `close` (or the pipe closes)."""
    stats = _Stats()
    watchers: list[Watcher] = []
    cpu_mark = own_cpu_seconds()
    while True:
        try:
            cmd, arg = await asyncio.to_thread(conn.recv)
        except (EOFError, OSError):
            cmd, arg = "close", None
        if cmd == "connect":
            for w in watchers:
                w.close()
            stats.reset()
            targets, ready_on, concurrency, timeout = arg
            watchers, report = await _connect_all(targets, stats, ready_on, concurrency, timeout)
            conn.send(report)
        elif cmd == "measure":
            stats.new_window(float(arg))
            for w in watchers:
                w.seen.clear()
            cpu_mark = own_cpu_seconds()
            conn.send({"cpu": cpu_mark})
        elif cmd == "collect":
            t_end = float(arg)
            stats.measuring = False
            cpu = own_cpu_seconds() - cpu_mark
            lat = np.frombuffer(stats.lat, dtype=np.float64)
            lat_ts = np.frombuffer(stats.lat_ts, dtype=np.float64)
            keep = lat_ts <= t_end
            per_seq = {k: v for k, v in stats.per_seq.items() if v[2] <= t_end}
            conn.send(
                {
                    "lat": lat[keep].tobytes(),
                    "per_seq": per_seq,
                    "dups": stats.dups,
                    "hellos_in_window": stats.hellos_in_window,
                    "other": dict(stats.other),
                    "closes": dict(stats.closes),
                    "pings": stats.pings,
                    "cpu_s": cpu,
                    "open": sum(1 for w in watchers if w.closed is None),
                }
            )
        elif cmd == "close":
            for w in watchers:
                w.close()
            await asyncio.sleep(0.2)
            with contextlib.suppress(OSError):
                conn.send({"closed": len(watchers)})
            return


def _client_process(conn: Connection) -> None:
    import uvloop

    raise_nofile()
    uvloop.run(_client_main(conn))


# -- parent side ------------------------------------------------------------------------------


@dataclass
class Deliveries:
    """What every client process saw during one measured window, merged."""

    watchers: int
    latencies: np.ndarray  # seconds, one per delivery
    per_seq: dict[tuple[Any, int], list[Any]]  # key → [count, last_recv, ts, type]
    dups: int
    hellos_in_window: int
    other: dict[str, int]
    closes: dict[int, int]
    pings: int
    loadgen_cpu_s: float
    open_at_end: int
    published: int | None = None  # when the driver knows how many events it caused
    # Lower bounds per type when the driver knows only some (e.g. every admin health change is
    # one `stream` event, while `viewers` are coalesced by the server).
    expected_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def deliveries(self) -> int:
        return int(self.latencies.size)

    def missed(self) -> int:
        """Deliveries that should have happened but did not: every watcher should have every seq."""
        missing = sum(self.watchers - rec[0] for rec in self.per_seq.values())
        if self.published is not None and self.published > len(self.per_seq):
            missing += (self.published - len(self.per_seq)) * self.watchers
        seen = self.by_type()
        for kind, expected in self.expected_by_type.items():
            missing += max(expected - seen.get(kind, 0), 0) * self.watchers
        return int(missing)

    def seq_gaps(self) -> int:
        """Seqs inside the observed range that no watcher received (seq rises by one per event)."""
        by_epoch: dict[Any, list[int]] = {}
        for epoch, seq in self.per_seq:
            by_epoch.setdefault(epoch, []).append(seq)
        return sum(max(s) - min(s) + 1 - len(s) for s in by_epoch.values() if s)

    def completion(self) -> np.ndarray:
        """Per broadcast: origin → the last watcher has it (seconds); only complete broadcasts."""
        return np.array(
            [rec[1] - rec[2] for rec in self.per_seq.values() if rec[0] >= self.watchers],
            dtype=np.float64,
        )

    def by_type(self) -> dict[str, int]:
        return dict(Counter(rec[3] for rec in self.per_seq.values()))


@dataclass
class LoadGen:
    """Client processes holding the watchers; use as `with LoadGen(n) as lg:` to always stop them."""

    processes: int = 2
    _procs: list[Any] = field(default_factory=list)
    _conns: list[Connection] = field(default_factory=list)
    watchers: int = 0

    def __enter__(self) -> Self:
        ctx = mp.get_context("spawn")
        for _ in range(self.processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_client_process, args=(child,), daemon=True)
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    async def _ask(
        self, messages: list[tuple[str, Any]], timeout: float = REPLY_TIMEOUT
    ) -> list[Any]:
        for conn, message in zip(self._conns, messages, strict=True):
            conn.send(message)

        def wait(conn: Connection) -> Any:
            if not conn.poll(timeout):
                raise TimeoutError("load generator process did not answer")
            return conn.recv()

        return list(await asyncio.gather(*(asyncio.to_thread(wait, c) for c in self._conns)))

    async def connect(
        self,
        targets: list[Target],
        *,
        ready_on: str = "hello",
        concurrency: int = 200,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Open every target's websocket (round-robin over processes); return the connect report.

        A watcher is ready at its first `hello` (`ready_on="hello"`) or at the 101
        (`"upgrade"`). `connect_rate` is watchers/s from the first attempt until the
        last watcher was ready. `concurrency` is per process; <= 0 starts every connect
        at once.
        """
        shares: list[list[Target]] = [targets[i :: self.processes] for i in range(self.processes)]
        replies = await self._ask(
            [("connect", (s, ready_on, concurrency, timeout)) for s in shares], timeout + 30
        )
        ok = sum(r["ok"] for r in replies)
        self.watchers = ok
        t0 = min(r["t_first_start"] for r in replies)
        t1 = max(r["t_last_ready"] for r in replies)
        errors = merged_counts(replies, "errors")
        statuses = merged_counts(replies, "statuses")
        waits = np.concatenate(
            [np.frombuffer(r["waits"], dtype=np.float64) for r in replies] or [np.array([])]
        )
        return {
            "requested": len(targets),
            "connected": ok,
            "failed": sum(r["failed"] for r in replies),
            "errors": dict(errors),
            "failed_statuses": dict(statuses),
            "connect_seconds": round(t1 - t0, 3),
            "connect_rate_per_s": round(ok / (t1 - t0), 1) if t1 > t0 else None,
            # Per watcher: its connect attempt → its first `hello` (or 101).
            "time_to_ready_ms": percentiles(waits),
            "loadgen_cpu_s": round(sum(r["cpu_s"] for r in replies), 3),
        }

    async def measure(self, t0: float) -> None:
        """Start a fresh window: count channel events whose origin `ts` is at or after `t0`."""
        await self._ask([("measure", t0)] * self.processes, 30)

    async def collect(
        self,
        t_end: float,
        *,
        published: int | None = None,
        expected_by_type: dict[str, int] | None = None,
    ) -> Deliveries:
        """Stop counting and merge what every process saw for events with ts ≤ `t_end`."""
        replies = await self._ask([("collect", t_end)] * self.processes, 120)
        per_seq: dict[tuple[Any, int], list[Any]] = {}
        for r in replies:
            for key, rec in r["per_seq"].items():
                mine = per_seq.get(key)
                if mine is None:
                    per_seq[key] = list(rec)
                else:
                    mine[0] += rec[0]
                    mine[1] = max(mine[1], rec[1])
        return Deliveries(
            watchers=self.watchers,
            latencies=merged_latencies(replies),
            per_seq=per_seq,
            dups=sum(r["dups"] for r in replies),
            hellos_in_window=sum(r["hellos_in_window"] for r in replies),
            other=dict(merged_counts(replies, "other")),
            closes=dict(merged_counts(replies, "closes")),
            pings=sum(r["pings"] for r in replies),
            loadgen_cpu_s=sum(r["cpu_s"] for r in replies),
            open_at_end=sum(r["open"] for r in replies),
            published=published,
            expected_by_type=dict(expected_by_type or {}),
        )

    async def disconnect(self) -> None:
        """Close every watcher (close frame 1000) without stopping the processes."""
        await self._ask([("connect", ([], "hello", 1, 1.0))] * self.processes, 60)
        self.watchers = 0

    def stop(self) -> None:
        """Ask each process to close its sockets and exit; terminate any that do not."""
        for conn in self._conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("close", None))
        deadline = time.monotonic() + 10
        for proc in self._procs:
            proc.join(max(deadline - time.monotonic(), 0.1))
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for conn in self._conns:
            conn.close()
        self._procs.clear()
        self._conns.clear()


# -- one-shot worker processes (HTTP load) -----------------------------------------------------


def _one_shot(conn: Connection, fn_path: str, arg: Any) -> None:
    import importlib

    import uvloop

    raise_nofile()
    module, name = fn_path.split(":")
    fn = getattr(importlib.import_module(module), name)
    try:
        result = uvloop.run(fn(arg))
    except Exception as err:
        conn.send({"error": repr(err)})  # the parent reports it; the traceback goes to stderr
        raise
    conn.send(result)
    conn.close()


async def run_processes(fn_path: str, args: list[Any], *, timeout: float) -> list[Any]:
    """Run the async function "module:name"(arg) in one spawned process per arg; return results.

    Every process is joined or killed before this returns, also on timeout or cancel.
    """
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    conns: list[Connection] = []
    try:
        for arg in args:
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_one_shot, args=(child, fn_path, arg), daemon=True)
            proc.start()
            child.close()
            procs.append(proc)
            conns.append(parent)

        def wait(conn: Connection) -> Any:
            if not conn.poll(timeout):
                raise TimeoutError(f"{fn_path} did not finish in {timeout}s")
            return conn.recv()

        results = list(await asyncio.gather(*(asyncio.to_thread(wait, c) for c in conns)))
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for conn in conns:
            conn.close()
    failed = [r for r in results if isinstance(r, dict) and "error" in r]
    if failed:
        raise RuntimeError(f"{fn_path} failed in a worker: {failed[0]['error']}")
    return results


async def http_get_worker(arg: dict[str, Any]) -> dict[str, Any]:
    """`concurrency` keep-alive clients GET `url` in a loop from `start_at` for `duration` seconds.

    The fallback load generator when wrk is not installed. Bounded by time and
    by `max_requests`. Returns latencies (seconds, float64 bytes) and status counts.
    """
    import aiohttp

    url: str = arg["url"]
    headers: dict[str, str] = arg.get("headers") or {}
    concurrency: int = arg["concurrency"]
    duration: float = arg["duration"]
    max_requests: int = arg.get("max_requests", 10_000_000)
    lat = array("d")
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    delay = arg.get("start_at", time.time()) - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    cpu0 = own_cpu_seconds()
    t0 = time.perf_counter()
    end = t0 + duration
    sent = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:

        async def loop() -> None:
            nonlocal sent
            while sent < max_requests:
                t = time.perf_counter()
                if t >= end:
                    return
                sent += 1
                try:
                    async with http.get(url) as resp:
                        await resp.read()
                        statuses[resp.status] += 1
                except (aiohttp.ClientError, TimeoutError) as err:
                    errors[type(err).__name__] += 1
                    continue
                lat.append(time.perf_counter() - t)

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {
        "lat": lat.tobytes(),
        "statuses": dict(statuses),
        "errors": dict(errors),
        "wall_s": wall,
        "cpu_s": own_cpu_seconds() - cpu0,
    }
