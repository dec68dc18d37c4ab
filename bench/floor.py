"""The floor of this runtime: the least a Python websocket fan-out server can do.

A minimal uvloop server with no framework. It accepts websocket upgrades on
any path (the same request shape the project gets), answers GET /healthz, and
subscribes to one Redis channel. When a message arrives it builds one
websocket text frame from the message bytes and writes that same frame to
every connected socket with `transport.write`. Nothing else: no auth, no
sessions, no pings, no per-socket buffering policy. The project is judged by
how close it comes to this.

On connect it sends a tiny `hello` so clients know they are subscribed, as
they do with the project.

    python -m bench.floor --port 9000 --redis-url redis://127.0.0.1:6379/0 --channel floor:ch_101
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import signal
import time
from typing import Final

import redis.asyncio as redis
import uvloop

from bench._frames import next_frame

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (server → client)."""
    n = len(payload)
    if n < 126:
        return bytes([0x81, n]) + payload
    if n < 65536:
        return bytes([0x81, 126]) + n.to_bytes(2, "big") + payload
    return bytes([0x81, 127]) + n.to_bytes(8, "big") + payload


class FloorConn(asyncio.Protocol):
    """One client: the upgrade, then only close frames are looked at."""

    __slots__ = ("buf", "server", "transport", "upgraded")

    def __init__(self, server: Floor) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.server.conns.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > 16384:
                    self.transport.close()
                else:
                    self.buf = data
                return
            self._request(data[:end])
            data = data[end + 4 :]
            if not self.upgraded:
                return
        # Client frames: pongs and close. Skip over them; answer a close and hang up.
        pos = 0
        while (frame := next_frame(data, pos)) is not None:
            b0, _, pos = frame
            if b0 & 0x0F == 0x8:
                self.server.conns.discard(self.transport)
                self.transport.write(b"\x88\x02\x03\xe8")
                self.transport.close()
                return
        if pos < len(data):
            self.buf = data[pos:]

    def _request(self, head: bytes) -> None:
        assert self.transport is not None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        path = parts[1] if len(parts) > 1 else "/"
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if path == "/healthz":
            body = b'{"status":"ok"}'
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            self.transport.close()
            return
        key = headers.get("sec-websocket-key")
        if headers.get("upgrade", "").lower() != "websocket" or not key:
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
        proto = headers.get("sec-websocket-protocol", "").split(",")[0].strip()
        extra = b"Sec-WebSocket-Protocol: %s\r\n" % proto.encode() if proto else b""
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n" % (accept, extra)
        )
        self.upgraded = True
        self.server.conns.add(self.transport)
        self.transport.write(self.server.hello())


class Floor:
    """Accepts sockets and relays each Redis message to all of them as one pre-built frame."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self.redis_url = redis_url
        self.channel = channel
        self.conns: set[asyncio.Transport] = set()
        self.epoch: object = 0
        self.seq = 0

    def hello(self) -> bytes:
        body = {"type": "hello", "epoch": self.epoch, "seq": self.seq, "ts": time.time()}
        return text_frame(json.dumps(body, separators=(",", ":")).encode())

    async def relay(self, ready: asyncio.Event) -> None:
        client = redis.Redis.from_url(self.redis_url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            ready.set()
            while True:
                msg = await pubsub.get_message(timeout=None)
                if msg is None or msg["type"] != "message":
                    continue
                frame = text_frame(msg["data"])
                for transport in self.conns:
                    transport.write(frame)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()


async def serve(port: int, redis_url: str, channel: str, host: str = "127.0.0.1") -> None:
    floor = Floor(redis_url, channel)
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    relay = asyncio.create_task(floor.relay(ready))
    await asyncio.wait_for(ready.wait(), 30)
    server = await loop.create_server(lambda: FloorConn(floor), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        for transport in list(floor.conns):
            transport.write(b"\x88\x02\x03\xf4")  # 1012: going away, reconnect elsewhere
            transport.close()
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay


def main() -> None:
    from bench._harness import command_parser, raise_nofile

    parser = command_parser("floor", __doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--channel", required=True)
    args = parser.parse_args()
    raise_nofile()
    uvloop.run(serve(args.port, args.redis_url, args.channel, args.host))


if __name__ == "__main__":
    main()
