"""Stream tokens signed with each channel's current key version.

The version lives in PostgreSQL (`channels.stream_key_version`); instances
cache it for at most `max_age` seconds. The instance that rotates a key
forgets its cache at once and the real-time layer tells every instance
watching the channel (bus), which re-reads it and sends each watcher a new
`token`. An instance with no watchers there may mint with the previous
version for up to `max_age`: CDN edges accept the previous version until the
tokens signed with it expire (stream_token_ttl + max_age).
"""

from __future__ import annotations

import time
from typing import Final

import asyncpg

from protocol.errors import NotFound
from server.auth import StreamToken, mint_stream_token
from store.channels import stream_key_version

DEFAULT_MAX_AGE: Final = 5.0


class StreamSigner:
    def __init__(
        self, pool: asyncpg.Pool, master_key: str, *, ttl: float, max_age: float = DEFAULT_MAX_AGE
    ) -> None:
        self.pool = pool
        self.master_key = master_key
        self.ttl = ttl
        self.max_age = max_age
        self._versions: dict[str, tuple[int, float]] = {}

    async def version(self, channel_id: str) -> int:
        """The channel's key version, from the cache if fresh, else from PostgreSQL."""
        cached = self._versions.get(channel_id)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self.max_age:
            return cached[0]
        version = await stream_key_version(self.pool, channel_id)
        if version is None:
            raise NotFound("Channel not found", field="channel_id")
        self._versions[channel_id] = (version, now)
        return version

    def cached_version(self, channel_id: str) -> int:
        """For synchronous callers (token timers): the last version read; 1 before any read."""
        cached = self._versions.get(channel_id)
        return cached[0] if cached is not None else 1

    def forget(self, channel_id: str) -> None:
        self._versions.pop(channel_id, None)

    def mint(
        self,
        channel_id: str,
        version: int,
        *,
        stream_id: str,
        session_id: str,
        user_id: str,
        quality: str,
        now: float | None = None,
    ) -> StreamToken:
        return mint_stream_token(
            self.master_key,
            channel_id=channel_id,
            key_version=version,
            stream_id=stream_id,
            session_id=session_id,
            user_id=user_id,
            quality=quality,
            ttl=self.ttl,
            now=now,
        )

    async def mint_for(
        self, channel_id: str, *, stream_id: str, session_id: str, user_id: str, quality: str
    ) -> StreamToken:
        version = await self.version(channel_id)
        return self.mint(
            channel_id,
            version,
            stream_id=stream_id,
            session_id=session_id,
            user_id=user_id,
            quality=quality,
        )
