"""`LiveClient`: one watcher's websocket with reconnect, resume and replay dropping.

The guarantees are in the package docstring; the codes it acts on are in
`droptv_live_client.constants`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp

from droptv_live_client.constants import (
    CHANNEL_EVENTS,
    HANDSHAKE_CLOSE_CODES,
    SUBPROTOCOL,
    TERMINAL_CODES,
    CloseCode,
)


class LiveClosed(Exception):
    """The server ended this session's socket for good; `code` says why (see the README)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed with {code} {reason}".strip())
        self.code = code
        self.reason = reason


class LiveClient:
    """One watcher's websocket, kept open across instance restarts and network drops."""

    def __init__(
        self,
        urls: str | Sequence[str],
        creator_id: str,
        session_id: str,
        token: str,
        *,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        max_attempts: int = 50,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one instance URL is required")
        self.creator_id = creator_id
        self.session_id = session_id
        self.token = token
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts
        self.epoch: str | None = None
        self.seq: int = 0
        self.connects = 0
        self.last_close_code: int | None = None
        self.url_index = 0
        self._http = http
        self._own_http = http is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def current_url(self) -> str:
        return self.urls[self.url_index % len(self.urls)]

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _ws_url(self, base: str) -> str:
        base = base.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return f"{base}/creators/{self.creator_id}/channel/live/ws"

    async def connect(self) -> None:
        """Open the socket, trying each URL with back-off; resume if we have seen messages before."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        delay = self.backoff_initial
        last_error: BaseException | None = None
        for _ in range(self.max_attempts):
            url = self._ws_url(self.current_url)
            try:
                self._ws = await self._http.ws_connect(
                    url,
                    params={"session_id": self.session_id},
                    protocols=(SUBPROTOCOL,),
                    headers={"Authorization": f"Bearer {self.token}"},
                    autoping=True,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                    max_msg_size=4 * 1024 * 1024,
                )
            except aiohttp.WSServerHandshakeError as err:
                if err.status in HANDSHAKE_CLOSE_CODES:
                    raise LiveClosed(HANDSHAKE_CLOSE_CODES[err.status], err.message) from err
                last_error = err
            except (TimeoutError, aiohttp.ClientError, OSError) as err:
                last_error = err
            else:
                self.connects += 1
                if self.epoch is not None:
                    await self._ws.send_str(
                        json.dumps({"type": "resume", "epoch": self.epoch, "last_seq": self.seq})
                    )
                return
            self.url_index += 1
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(self.backoff_max, delay * 2)
        raise ConnectionError(f"could not connect to any of {self.urls}") from last_error

    def _accept(self, msg: dict[str, Any]) -> bool:
        """Track epoch/seq; False for a channel event already seen (replay after resume)."""
        kind = msg.get("type")
        epoch, seq = msg.get("epoch"), msg.get("seq")
        if not isinstance(seq, int):
            return True
        if kind == "hello" or epoch != self.epoch:
            self.epoch = epoch if isinstance(epoch, str) else str(epoch)
            self.seq = seq
            return True
        if kind in CHANNEL_EVENTS:
            if seq <= self.seq:
                return False
            self.seq = seq
        return True

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            if self._ws is None:
                await self.connect()
            assert self._ws is not None
            raw = await self._ws.receive()
            if raw.type == aiohttp.WSMsgType.TEXT:
                msg = json.loads(raw.data)
                if self._accept(msg):
                    yield msg
                continue
            if raw.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                # The code the server sent wins over what aiohttp records after a failed close reply.
                code = (
                    raw.data
                    if raw.type == aiohttp.WSMsgType.CLOSE
                    else (self._ws.close_code or aiohttp.WSCloseCode.ABNORMAL_CLOSURE)
                )
                self.last_close_code = code
                await self._ws.close()
                self._ws = None
                if code in TERMINAL_CODES:
                    raise LiveClosed(code, str(raw.extra or ""))
                if code == CloseCode.NORMAL:
                    return
                # A draining instance is going away: try the next URL first.
                self.url_index += 1 if code == CloseCode.DRAINING else 0
                if code == CloseCode.RATE_LIMITED:
                    # Reconnecting at once would only hit the same budget again.
                    await asyncio.sleep(self.backoff_max * (0.5 + random.random() / 2))
                await self.connect()

    async def send(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            raise ConnectionError("not connected")
        await self._ws.send_str(json.dumps(message))

    async def set_quality(self, quality: str) -> None:
        await self.send({"type": "quality", "quality": quality})

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None
