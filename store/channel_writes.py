"""Creators, channels, streams, EPG programs and entitlements in PostgreSQL: the admin writes.

Each call is one statement or one transaction and reports driver errors as
store.errors `Conflict` (a unique key exists), `NotFound` (a referenced row
does not) or `RejectedData`, each naming the field (`write_one`). A channel
has at most one live stream (a partial unique index); `go_offline` ends the
stream and all its live watch sessions (reason "stream_offline") in the same
statement. The read side is store.channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from protocol.epg import Program
from store.channels import (
    CHANNEL_COLUMNS,
    CREATOR_COLUMNS,
    PROGRAM_COLUMNS,
    STREAM_COLUMNS,
    Channel,
    Creator,
    Stream,
    column_list,
    get_channel,
    get_creator,
    get_live_stream,
    program_of,
    stream_of,
)
from store.errors import Conflict, NotFound, RejectedData, edge, translate

__all__ = [
    "create_channel",
    "create_creator",
    "create_program",
    "delete_program",
    "go_live",
    "go_offline",
    "grant_follow",
    "grant_ppv",
    "grant_subscription",
    "rotate_stream_key",
    "update_channel",
    "update_creator",
    "update_program",
    "update_stream",
    "write_one",
]


def _duplicate_field(err: asyncpg.UniqueViolationError, default: str) -> str:
    constraint = err.constraint_name or ""
    if "channel_number" in constraint:
        return "channel_number"
    if constraint == "channels_creator_id_key":
        return "creator_id"
    if "one_live" in constraint:
        return "channel_id"
    return default


@edge
async def write_one(
    pool: asyncpg.Pool | asyncpg.Connection,
    sql: str,
    *args: Any,
    key: str,
    refs: Mapping[str, str] | None = None,
) -> asyncpg.Record | None:
    """Run one write; key violations become Conflict/NotFound naming the field.

    `refs` maps a foreign-key column to the field the client sent it as.
    """
    try:
        record: asyncpg.Record | None = await pool.fetchrow(sql, *args)
        return record
    except asyncpg.UniqueViolationError as err:
        field = _duplicate_field(err, key)
        raise Conflict(
            f"{field} already exists" if field != "channel_id" else "Channel is already live", field
        ) from None
    except asyncpg.ForeignKeyViolationError as err:
        detail = err.detail or ""
        for column, field in (refs or {}).items():
            if f"({column})" in detail:
                raise NotFound(f"Unknown {field}", field) from None
        raise NotFound("A referenced row does not exist", key) from None
    except asyncpg.CheckViolationError as err:
        raise RejectedData(f"Invalid value (constraint {err.constraint_name})", key) from None
    except Exception as err:
        raise translate(err, field=key) from err


def _set_clause(values: Mapping[str, Any], start: int) -> tuple[str, list[Any]]:
    names = list(values)
    return ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start)), [values[n] for n in names]


@edge
async def create_creator(
    pool: asyncpg.Pool, *, creator_id: str, name: str, is_verified: bool
) -> Creator:
    record = await write_one(
        pool,
        f"insert into creators (creator_id, name, is_verified) values ($1, $2, $3)"
        f" returning {column_list(CREATOR_COLUMNS)}",
        creator_id,
        name,
        is_verified,
        key="creator_id",
    )
    assert record is not None
    return Creator(**dict(record))


@edge
async def update_creator(
    pool: asyncpg.Pool, creator_id: str, changes: Mapping[str, Any]
) -> Creator | None:
    if not changes:
        return await get_creator(pool, creator_id)
    clause, args = _set_clause(changes, 2)
    record = await write_one(
        pool,
        f"update creators set {clause} where creator_id = $1 returning {column_list(CREATOR_COLUMNS)}",
        creator_id,
        *args,
        key="creator_id",
    )
    return Creator(**dict(record)) if record else None


@edge
async def create_channel(
    pool: asyncpg.Pool,
    *,
    creator_id: str,
    channel_id: str,
    channel_name: str,
    channel_number: int,
    requires_subscription: bool,
) -> Channel:
    record = await write_one(
        pool,
        f"insert into channels (channel_id, creator_id, channel_name, channel_number,"
        f" requires_subscription) values ($1, $2, $3, $4, $5) returning {column_list(CHANNEL_COLUMNS)}",
        channel_id,
        creator_id,
        channel_name,
        channel_number,
        requires_subscription,
        key="channel_id",
        refs={"creator_id": "creator_id"},
    )
    assert record is not None
    return Channel(**dict(record))


@edge
async def update_channel(
    pool: asyncpg.Pool, channel_id: str, changes: Mapping[str, Any]
) -> Channel | None:
    if not changes:
        return await get_channel(pool, channel_id)
    clause, args = _set_clause(changes, 2)
    record = await write_one(
        pool,
        f"update channels set {clause} where channel_id = $1 returning {column_list(CHANNEL_COLUMNS)}",
        channel_id,
        *args,
        key="channel_id",
    )
    return Channel(**dict(record)) if record else None


@edge
async def create_program(pool: asyncpg.Pool, channel_id: str, program: Program) -> Program:
    record = await write_one(
        pool,
        f"insert into programs (channel_id, {column_list(PROGRAM_COLUMNS)})"
        f" values ($1, $2, $3, $4, $5, $6, $7) returning {column_list(PROGRAM_COLUMNS)}",
        channel_id,
        *(getattr(program, c) for c in PROGRAM_COLUMNS),
        key="program_id",
        refs={"channel_id": "channel_id"},
    )
    assert record is not None
    return program_of(record)


@edge
async def update_program(pool: asyncpg.Pool, program_id: str, program: Program) -> Program | None:
    """Replace a program's fields (the caller merged the patch and validated the interval)."""
    clause, args = _set_clause({c: getattr(program, c) for c in PROGRAM_COLUMNS[1:]}, 2)
    record = await write_one(
        pool,
        f"update programs set {clause} where program_id = $1 returning {column_list(PROGRAM_COLUMNS)}",
        program_id,
        *args,
        key="program_id",
    )
    return program_of(record) if record else None


@edge
async def delete_program(pool: asyncpg.Pool, program_id: str) -> str | None:
    """Delete a program; return its channel_id, or None if it did not exist."""
    channel_id: str | None = await pool.fetchval(
        "delete from programs where program_id = $1 returning channel_id", program_id
    )
    return channel_id


@edge
async def go_live(
    pool: asyncpg.Pool, channel_id: str, stream_id: str, settings: Mapping[str, Any]
) -> Stream:
    """Start a broadcast; raises Duplicate(field channel_id) if the channel is already live."""
    values = {"stream_id": stream_id, "channel_id": channel_id, **settings}
    names = list(values)
    record = await write_one(
        pool,
        f"insert into streams ({', '.join(names)})"
        f" values ({', '.join(f'${i}' for i in range(1, len(names) + 1))})"
        f" returning {column_list(STREAM_COLUMNS)}",
        *(values[n] for n in names),
        key="stream_id",
        refs={"channel_id": "channel_id"},
    )
    assert record is not None
    return stream_of(record)


@edge
async def go_offline(pool: asyncpg.Pool, channel_id: str) -> tuple[Stream, list[str]] | None:
    """End the live stream and its live sessions atomically; None if the channel was offline.

    Returns the ended stream and the ids of the sessions ended with it.
    """
    async with pool.acquire() as conn, conn.transaction():
        record = await conn.fetchrow(
            f"update streams set ended_at = now() where channel_id = $1 and ended_at is null"
            f" returning {column_list(STREAM_COLUMNS)}",
            channel_id,
        )
        if record is None:
            return None
        ended = await conn.fetch(
            "update watch_sessions set ended_at = now(), end_reason = 'stream_offline'"
            " where stream_id = $1 and ended_at is null returning session_id",
            record["stream_id"],
        )
    return stream_of(record), [r["session_id"] for r in ended]


@edge
async def update_stream(
    pool: asyncpg.Pool, channel_id: str, changes: Mapping[str, Any]
) -> Stream | None:
    """Change settings (health, title, bitrate, ...) of the live stream; None if offline."""
    if not changes:
        return await get_live_stream(pool, channel_id)
    clause, args = _set_clause(changes, 2)
    record = await write_one(
        pool,
        f"update streams set {clause} where channel_id = $1 and ended_at is null"
        f" returning {column_list(STREAM_COLUMNS)}",
        channel_id,
        *args,
        key="stream_id",
    )
    return stream_of(record) if record else None


@edge
async def rotate_stream_key(pool: asyncpg.Pool, channel_id: str) -> int | None:
    """Bump the channel's stream key version; None for an unknown channel."""
    version = await pool.fetchval(
        "update channels set stream_key_version = stream_key_version + 1"
        " where channel_id = $1 returning stream_key_version",
        channel_id,
    )
    return int(version) if version is not None else None


@edge
async def grant_follow(pool: asyncpg.Pool, user_id: str, creator_id: str) -> None:
    """Idempotent."""
    await write_one(
        pool,
        "insert into follows (user_id, creator_id) values ($1, $2) on conflict do nothing",
        user_id,
        creator_id,
        key="creator_id",
        refs={"creator_id": "creator_id"},
    )


@edge
async def grant_subscription(
    pool: asyncpg.Pool, user_id: str, creator_id: str, expires_at: datetime | None
) -> None:
    """Create or replace the user's subscription (a new expiry overwrites the old one)."""
    await write_one(
        pool,
        "insert into subscriptions (user_id, creator_id, expires_at) values ($1, $2, $3)"
        " on conflict (user_id, creator_id) do update set expires_at = excluded.expires_at",
        user_id,
        creator_id,
        expires_at,
        key="creator_id",
        refs={"creator_id": "creator_id"},
    )


@edge
async def grant_ppv(pool: asyncpg.Pool, user_id: str, content_id: str) -> None:
    """Idempotent."""
    await write_one(
        pool,
        "insert into ppv_purchases (user_id, content_id) values ($1, $2) on conflict do nothing",
        user_id,
        content_id,
        key="content_id",
        refs={"content_id": "content_id"},
    )
