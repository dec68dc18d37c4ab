"""Creators, channels, streams, EPG programs and entitlements in PostgreSQL.

Read side: `channel_snapshot` fetches a creator with its channel and live
stream in one query (what endpoints 28–36 start from); `get_live_stream` and
`programs_between` serve the websocket layer too.

Write side (admin API): each call is one statement or one transaction and
reports driver errors as store.errors `Conflict` (a unique key exists),
`NotFound` (a referenced row does not) or `RejectedData`, each naming the field. A channel has at most one
live stream (a partial unique index); `go_offline` ends the stream and all
its live watch sessions (reason "stream_offline") in the same statement.

Entitlements: a channel with `requires_subscription` is watchable by users
with an active subscription to its creator (expires_at null or ahead); other
channels by any signed-in user. The creator (bearer sub == creator_id) and
admins are always entitled.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import asyncpg
import msgspec

from protocol.epg import Program
from store.errors import Conflict, NotFound, RejectedData, edge, translate

__all__ = [
    "Channel",
    "ChannelSnapshot",
    "Creator",
    "Stream",
    "channel_snapshot",
    "create_channel",
    "create_creator",
    "create_program",
    "delete_program",
    "get_channel",
    "get_creator",
    "get_live_stream",
    "get_program",
    "go_live",
    "go_offline",
    "grant_follow",
    "grant_ppv",
    "grant_subscription",
    "programs_between",
    "update_channel",
    "update_creator",
    "update_program",
    "update_stream",
    "user_state",
    "write_one",
]


class Creator(msgspec.Struct, kw_only=True, frozen=True):
    creator_id: str
    name: str
    is_verified: bool
    created_at: datetime


class Channel(msgspec.Struct, kw_only=True, frozen=True):
    channel_id: str
    creator_id: str
    channel_name: str
    channel_number: int
    requires_subscription: bool
    created_at: datetime


class Stream(msgspec.Struct, kw_only=True, frozen=True):
    """One broadcast; live while `ended_at` is None."""

    stream_id: str
    channel_id: str
    title: str
    started_at: datetime
    ended_at: datetime | None
    health: str
    latency_mode: str
    bitrate_kbps: int
    resolution: str
    frame_rate: int
    cdn_provider: str
    cdn_region: str
    cdn_edge_location: str
    drm_enabled: bool
    drm_type: str | None
    drm_license_url: str | None
    dvr_enabled: bool

    @property
    def is_live(self) -> bool:
        return self.ended_at is None


class ChannelSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    """A creator, its channel (None if it has none yet) and the channel's live stream."""

    creator: Creator
    channel: Channel | None
    stream: Stream | None
    now: datetime  # PostgreSQL's clock when the snapshot was read


CREATOR_COLUMNS: Final = ("creator_id", "name", "is_verified", "created_at")
CHANNEL_COLUMNS: Final = (
    "channel_id",
    "creator_id",
    "channel_name",
    "channel_number",
    "requires_subscription",
    "created_at",
)
STREAM_COLUMNS: Final = tuple(Stream.__struct_fields__)
PROGRAM_COLUMNS: Final = (
    "program_id",
    "title",
    "starts_at",
    "ends_at",
    "description",
    "thumbnail_url",
)
# Stream settings an operator may set at go-live or change while live.
STREAM_SETTINGS: Final = (
    "title",
    "health",
    "latency_mode",
    "bitrate_kbps",
    "resolution",
    "frame_rate",
    "cdn_provider",
    "cdn_region",
    "cdn_edge_location",
    "drm_enabled",
    "drm_type",
    "drm_license_url",
    "dvr_enabled",
)


def _cols(columns: tuple[str, ...], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + c for c in columns)


def _pick(record: Mapping[str, Any], columns: tuple[str, ...], prefix: str = "") -> dict[str, Any]:
    return {c: record[prefix + c] for c in columns}


def _program(record: Mapping[str, Any]) -> Program:
    return Program(**_pick(record, PROGRAM_COLUMNS))


@edge
async def get_creator(pool: asyncpg.Pool, creator_id: str) -> Creator | None:
    record = await pool.fetchrow(
        f"select {_cols(CREATOR_COLUMNS)} from creators where creator_id = $1", creator_id
    )
    return Creator(**dict(record)) if record else None


@edge
async def get_channel(pool: asyncpg.Pool, channel_id: str) -> Channel | None:
    record = await pool.fetchrow(
        f"select {_cols(CHANNEL_COLUMNS)} from channels where channel_id = $1", channel_id
    )
    return Channel(**dict(record)) if record else None


@edge
async def get_live_stream(pool: asyncpg.Pool, channel_id: str) -> Stream | None:
    """The channel's live stream, or None when it is offline."""
    record = await pool.fetchrow(
        f"select {_cols(STREAM_COLUMNS)} from streams where channel_id = $1 and ended_at is null",
        channel_id,
    )
    return Stream(**dict(record)) if record else None


@edge
async def get_stream(pool: asyncpg.Pool, stream_id: str) -> Stream | None:
    record = await pool.fetchrow(
        f"select {_cols(STREAM_COLUMNS)} from streams where stream_id = $1", stream_id
    )
    return Stream(**dict(record)) if record else None


_SNAPSHOT_SQL: Final = (
    f"select now() as now, {_cols(CREATOR_COLUMNS, 'cr')},"
    f" {', '.join(f'ch.{c} as ch_{c}' for c in CHANNEL_COLUMNS)},"
    f" {', '.join(f's.{c} as s_{c}' for c in STREAM_COLUMNS)}"
    f" from creators cr"
    f" left join channels ch on ch.creator_id = cr.creator_id"
    f" left join streams s on s.channel_id = ch.channel_id and s.ended_at is null"
    f" where cr.creator_id = $1"
)


@edge
async def channel_snapshot(pool: asyncpg.Pool, creator_id: str) -> ChannelSnapshot | None:
    """Creator, channel and live stream in one query; None for an unknown creator."""
    record = await pool.fetchrow(_SNAPSHOT_SQL, creator_id)
    if record is None:
        return None
    channel = (
        Channel(**_pick(record, CHANNEL_COLUMNS, "ch_"))
        if record["ch_channel_id"] is not None
        else None
    )
    stream = (
        Stream(**_pick(record, STREAM_COLUMNS, "s_")) if record["s_stream_id"] is not None else None
    )
    return ChannelSnapshot(
        creator=Creator(**_pick(record, CREATOR_COLUMNS)),
        channel=channel,
        stream=stream,
        now=record["now"],
    )


@edge
async def programs_between(
    pool: asyncpg.Pool, channel_id: str, start: datetime, end: datetime
) -> list[Program]:
    """Programs overlapping [start, end), sorted by start."""
    records = await pool.fetch(
        f"select {_cols(PROGRAM_COLUMNS)} from programs"
        f" where channel_id = $1 and starts_at < $3 and ends_at > $2"
        f" order by starts_at, ends_at, program_id",
        channel_id,
        start,
        end,
    )
    return [_program(r) for r in records]


@edge
async def get_program(pool: asyncpg.Pool, program_id: str) -> tuple[str, Program] | None:
    """(channel_id, program) or None."""
    record = await pool.fetchrow(
        f"select channel_id, {_cols(PROGRAM_COLUMNS)} from programs where program_id = $1",
        program_id,
    )
    return (record["channel_id"], _program(record)) if record else None


@edge
async def user_state(pool: asyncpg.Pool, user_id: str, creator_id: str) -> tuple[bool, bool]:
    """(is_following, is_subscribed) of a user for a creator; an expired subscription is not one."""
    record = await pool.fetchrow(
        "select exists(select 1 from follows where user_id = $1 and creator_id = $2) as f,"
        " exists(select 1 from subscriptions where user_id = $1 and creator_id = $2"
        "        and (expires_at is null or expires_at > now())) as s",
        user_id,
        creator_id,
    )
    assert record is not None
    return bool(record["f"]), bool(record["s"])


# --- admin writes -------------------------------------------------------------------------


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
        f" returning {_cols(CREATOR_COLUMNS)}",
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
        f"update creators set {clause} where creator_id = $1 returning {_cols(CREATOR_COLUMNS)}",
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
        f" requires_subscription) values ($1, $2, $3, $4, $5) returning {_cols(CHANNEL_COLUMNS)}",
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
        f"update channels set {clause} where channel_id = $1 returning {_cols(CHANNEL_COLUMNS)}",
        channel_id,
        *args,
        key="channel_id",
    )
    return Channel(**dict(record)) if record else None


@edge
async def create_program(pool: asyncpg.Pool, channel_id: str, program: Program) -> Program:
    record = await write_one(
        pool,
        f"insert into programs (channel_id, {_cols(PROGRAM_COLUMNS)})"
        f" values ($1, $2, $3, $4, $5, $6, $7) returning {_cols(PROGRAM_COLUMNS)}",
        channel_id,
        *(getattr(program, c) for c in PROGRAM_COLUMNS),
        key="program_id",
        refs={"channel_id": "channel_id"},
    )
    assert record is not None
    return _program(record)


@edge
async def update_program(pool: asyncpg.Pool, program_id: str, program: Program) -> Program | None:
    """Replace a program's fields (the caller merged the patch and validated the interval)."""
    clause, args = _set_clause({c: getattr(program, c) for c in PROGRAM_COLUMNS[1:]}, 2)
    record = await write_one(
        pool,
        f"update programs set {clause} where program_id = $1 returning {_cols(PROGRAM_COLUMNS)}",
        program_id,
        *args,
        key="program_id",
    )
    return _program(record) if record else None


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
        f" returning {_cols(STREAM_COLUMNS)}",
        *(values[n] for n in names),
        key="stream_id",
        refs={"channel_id": "channel_id"},
    )
    assert record is not None
    return Stream(**dict(record))


@edge
async def go_offline(pool: asyncpg.Pool, channel_id: str) -> tuple[Stream, list[str]] | None:
    """End the live stream and its live sessions atomically; None if the channel was offline.

    Returns the ended stream and the ids of the sessions ended with it.
    """
    async with pool.acquire() as conn, conn.transaction():
        record = await conn.fetchrow(
            f"update streams set ended_at = now() where channel_id = $1 and ended_at is null"
            f" returning {_cols(STREAM_COLUMNS)}",
            channel_id,
        )
        if record is None:
            return None
        ended = await conn.fetch(
            "update watch_sessions set ended_at = now(), end_reason = 'stream_offline'"
            " where stream_id = $1 and ended_at is null returning session_id",
            record["stream_id"],
        )
    return Stream(**dict(record)), [r["session_id"] for r in ended]


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
        f" returning {_cols(STREAM_COLUMNS)}",
        channel_id,
        *args,
        key="stream_id",
    )
    return Stream(**dict(record)) if record else None


@edge
async def stream_key_version(pool: asyncpg.Pool, channel_id: str) -> int | None:
    version = await pool.fetchval(
        "select stream_key_version from channels where channel_id = $1", channel_id
    )
    return int(version) if version is not None else None


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
