"""Test-side helpers for the websocket protocol: create sessions over REST, watch over a socket.

Deliberately small and independent of server code: it speaks HTTP and
websocket like any client would, so tests check the wire, not internals.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.conftest import auth, token

PROTOCOL = "droptv.live.v1"
CREATOR = "creator_001"
CHANNEL = "ch_101"


async def start_watch(
    http: aiohttp.ClientSession,
    base: str,
    user: str = "user_123",
    *,
    creator: str = CREATOR,
    channel: str = CHANNEL,
    device: str = "web",
    timezone: str = "UTC",
    quality: str = "auto",
) -> str:
    """POST watch (endpoint 33); returns the new session id."""
    async with http.post(
        f"{base}/creators/{creator}/channel/live/watch",
        headers=auth(user),
        json={
            "channel_id": channel,
            "device_type": device,
            "quality": quality,
            "timezone": timezone,
        },
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["data"]["session"]["session_id"])


async def end_watch(
    http: aiohttp.ClientSession,
    base: str,
    session_id: str,
    user: str = "user_123",
    creator: str = CREATOR,
) -> None:
    async with http.delete(
        f"{base}/creators/{creator}/channel/live/watch",
        params={"session_id": session_id},
        headers=auth(user),
    ) as resp:
        assert resp.status == 200, await resp.text()


async def admin(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body, headers=auth("ops", admin=True)) as resp:
        data = await resp.json()
        assert resp.status in (200, 201), data
        return data["data"]


class Watcher:
    """One websocket; records every message; `next(type)` waits for the next one of a type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.messages: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.close_code: int | None = None
        self._cursor = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        http: aiohttp.ClientSession,
        ws_base: str,
        session_id: str,
        user: str = "user_123",
        *,
        creator: str = CREATOR,
        via_query: bool = False,
    ) -> Watcher:
        url = f"{ws_base}/creators/{creator}/channel/live/ws"
        params = {"session_id": session_id}
        headers = {}
        if via_query:
            params["access_token"] = token(user)
        else:
            headers = auth(user)
        ws = await http.ws_connect(
            url,
            params=params,
            headers=headers,
            protocols=(PROTOCOL,),
            autoping=True,
            heartbeat=None,
        )
        return cls(ws, session_id)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.raw.append(msg.data)
                self.messages.append(json.loads(msg.data))
                self._changed.set()
        self.close_code = self.ws.close_code
        self._changed.set()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def next(
        self,
        type_: str | None = None,
        timeout: float = 10.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The next unseen message (of `type_`, matching `where`); earlier ones are passed over."""
        found: dict[str, Any] | None = None

        def look() -> bool:
            nonlocal found
            while self._cursor < len(self.messages):
                msg = self.messages[self._cursor]
                self._cursor += 1
                if (type_ is None or msg["type"] == type_) and (where is None or where(msg)):
                    found = msg
                    return True
            if self.closed:
                raise AssertionError(f"closed ({self.close_code}) waiting for {type_}")
            return False

        await self.wait(look, timeout)
        assert found is not None
        return found

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] in types]

    async def send(self, obj: Any) -> None:
        await self.ws.send_str(obj if isinstance(obj, str) else json.dumps(obj))

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._reader)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)


async def refused_with(
    http: aiohttp.ClientSession,
    ws_base: str,
    session_id: str | None,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    creator: str = CREATOR,
) -> int | None:
    """Connect, expect the server to close at once; return the close code."""
    query = dict(params or {})
    if session_id is not None:
        query["session_id"] = session_id
    async with http.ws_connect(
        f"{ws_base}/creators/{creator}/channel/live/ws",
        params=query,
        headers=headers or {},
        protocols=(PROTOCOL,),
    ) as ws:
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        return ws.close_code


class RawSocket:
    """A websocket client on a plain socket that can stop reading (tiny receive buffer)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    def connect(
        cls, port: int, path: str, headers: dict[str, str], rcvbuf: int = 4096
    ) -> RawSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Protocol: {PROTOCOL}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = cls(sock)
        head = raw._read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return raw

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x81, 0x80 | n]) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_frames(self, timeout: float = 20.0) -> tuple[list[tuple[int, bytes]], bool]:
        """Read everything until the peer closes; returns (frames, ended cleanly by EOF)."""
        self.sock.settimeout(timeout)
        frames: list[tuple[int, bytes]] = []
        data = self.buffer
        eof = False
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    eof = True
                    break
                data += chunk
        except (ConnectionResetError, TimeoutError, OSError):
            pass
        while len(data) >= 2:
            opcode, n = data[0] & 0x0F, data[1] & 0x7F
            offset = 2
            if n == 126:
                (n,) = struct.unpack("!H", data[2:4])
                offset = 4
            elif n == 127:
                (n,) = struct.unpack("!Q", data[2:10])
                offset = 10
            if len(data) < offset + n:
                break
            frames.append((opcode, data[offset : offset + n]))
            data = data[offset + n :]
        return frames, eof

    def close(self) -> None:
        self.sock.close()
