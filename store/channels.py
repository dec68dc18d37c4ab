"""Creators, channels, streams, EPG programs and entitlements in PostgreSQL: the read side.

`channel_snapshot` fetches a creator with its channel and live stream in one
query (what endpoints 28–36 start from); `get_live_stream` and
`programs_between` serve the websocket layer too. The admin API's writes
live in store.channel_writes.

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
from protocol.values import LatencyMode, StreamHealth
from store.errors import edge

__all__ = [
    "Channel",
    "ChannelSnapshot",
    "Creator",
    "Stream",
    "channel_snapshot",
    "column_list",
    "get_channel",
    "get_creator",
    "get_live_stream",
    "get_program",
    "get_stream",
    "program_of",
    "programs_between",
    "stream_key_version",
    "stream_of",
    "user_state",
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
    health: StreamHealth
    latency_mode: LatencyMode
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


def column_list(columns: tuple[str, ...], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + c for c in columns)


def _pick(record: Mapping[str, Any], columns: tuple[str, ...], prefix: str = "") -> dict[str, Any]:
    return {c: record[prefix + c] for c in columns}


def program_of(record: Mapping[str, Any]) -> Program:
    return Program(**_pick(record, PROGRAM_COLUMNS))


def stream_of(row: Mapping[str, Any]) -> Stream:
    """A streams row (column name -> value) as a Stream, its closed sets as their enums."""
    values = dict(row)
    values["health"] = StreamHealth(values["health"])
    values["latency_mode"] = LatencyMode(values["latency_mode"])
    return Stream(**values)


@edge
async def get_creator(pool: asyncpg.Pool, creator_id: str) -> Creator | None:
    record = await pool.fetchrow(
        f"select {column_list(CREATOR_COLUMNS)} from creators where creator_id = $1", creator_id
    )
    return Creator(**dict(record)) if record else None


@edge
async def get_channel(pool: asyncpg.Pool, channel_id: str) -> Channel | None:
    record = await pool.fetchrow(
        f"select {column_list(CHANNEL_COLUMNS)} from channels where channel_id = $1", channel_id
    )
    return Channel(**dict(record)) if record else None


@edge
async def get_live_stream(pool: asyncpg.Pool, channel_id: str) -> Stream | None:
    """The channel's live stream, or None when it is offline."""
    record = await pool.fetchrow(
        f"select {column_list(STREAM_COLUMNS)} from streams where channel_id = $1 and ended_at is null",
        channel_id,
    )
    return stream_of(record) if record else None


@edge
async def get_stream(pool: asyncpg.Pool, stream_id: str) -> Stream | None:
    record = await pool.fetchrow(
        f"select {column_list(STREAM_COLUMNS)} from streams where stream_id = $1", stream_id
    )
    return stream_of(record) if record else None


_SNAPSHOT_SQL: Final = (
    f"select now() as now, {column_list(CREATOR_COLUMNS, 'cr')},"
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
        stream_of(_pick(record, STREAM_COLUMNS, "s_"))
        if record["s_stream_id"] is not None
        else None
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
        f"select {column_list(PROGRAM_COLUMNS)} from programs"
        f" where channel_id = $1 and starts_at < $3 and ends_at > $2"
        f" order by starts_at, ends_at, program_id",
        channel_id,
        start,
        end,
    )
    return [program_of(r) for r in records]


@edge
async def get_program(pool: asyncpg.Pool, program_id: str) -> tuple[str, Program] | None:
    """(channel_id, program) or None."""
    record = await pool.fetchrow(
        f"select channel_id, {column_list(PROGRAM_COLUMNS)} from programs where program_id = $1",
        program_id,
    )
    return (record["channel_id"], program_of(record)) if record else None


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


@edge
async def stream_key_version(pool: asyncpg.Pool, channel_id: str) -> int | None:
    version = await pool.fetchval(
        "select stream_key_version from channels where channel_id = $1", channel_id
    )
    return int(version) if version is not None else None
