"""Secret stream keys: one per channel, what an encoder publishes with.

A key is created on first read (`ensure_key`) from the operating system's
CSPRNG (160 bits), so every channel has one as soon as anybody asks, without
a backfill. `rotate_key` replaces it in one statement and keeps the old key as
`previous_key`, which `find_key` still resolves for unpublish only: an encoder
that was live when the key rotated can end its broadcast, but cannot start a
new one. Every function is one statement; errors leave as store.errors.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Final

import asyncpg
import msgspec

from protocol.ingest import KEY_PREFIX
from store.errors import edge

KEY_BYTES: Final = 20

__all__ = ["IngestKey", "KeyMatch", "ensure_key", "find_key", "new_key", "rotate_key"]


class IngestKey(msgspec.Struct, kw_only=True, frozen=True):
    channel_id: str
    stream_key: str
    rotated_at: datetime


class KeyMatch(msgspec.Struct, kw_only=True, frozen=True):
    """The channel a presented key belongs to; `current` is false for the previous key."""

    channel_id: str
    current: bool


def new_key() -> str:
    return KEY_PREFIX + secrets.token_hex(KEY_BYTES)


@edge
async def ensure_key(pool: asyncpg.Pool, channel_id: str) -> IngestKey | None:
    """The channel's key, created if it has none; None for an unknown channel.

    Safe under concurrent first reads: the insert does nothing when another won,
    and the union then returns the winner's row.
    """
    record = await pool.fetchrow(
        "with made as ("
        " insert into ingest_keys (channel_id, stream_key)"
        " select channel_id, $2 from channels where channel_id = $1"
        " on conflict (channel_id) do nothing"
        " returning channel_id, stream_key, rotated_at)"
        " select * from made"
        " union all"
        " select channel_id, stream_key, rotated_at from ingest_keys where channel_id = $1"
        " limit 1",
        channel_id,
        new_key(),
    )
    return IngestKey(**dict(record)) if record is not None else None


@edge
async def rotate_key(pool: asyncpg.Pool, channel_id: str) -> IngestKey | None:
    """A new key for the channel (the old one becomes `previous_key`); None if unknown."""
    record = await pool.fetchrow(
        "insert into ingest_keys (channel_id, stream_key)"
        " select channel_id, $2 from channels where channel_id = $1"
        " on conflict (channel_id) do update set previous_key = ingest_keys.stream_key,"
        " stream_key = excluded.stream_key, rotated_at = now()"
        " returning channel_id, stream_key, rotated_at",
        channel_id,
        new_key(),
    )
    return IngestKey(**dict(record)) if record is not None else None


@edge
async def find_key(pool: asyncpg.Pool, stream_key: str) -> KeyMatch | None:
    """Which channel `stream_key` opens: its current key, or its previous one (current=False)."""
    if not stream_key.startswith(KEY_PREFIX):
        return None
    record = await pool.fetchrow(
        "select channel_id, stream_key = $1 as current from ingest_keys"
        " where stream_key = $1 or previous_key = $1",
        stream_key,
    )
    return KeyMatch(**dict(record)) if record is not None else None
