"""What every admin handler shares: who may manage what, path lookups, rows as response bodies.

A bearer with `role: admin` may do everything; a creator (bearer sub ==
creator_id) may manage their own creator record, channel, programs, content
and streams (`may_manage`, 403 otherwise). Lookups raise 404 naming the
field (`found`). The routes are listed in server/routes/admin.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from aiohttp import web

from protocol.admin import ChannelOut, ContentOut, CreatorOut, ProgramOut, StreamOut
from protocol.epg import InvalidProgram, Program
from protocol.errors import Forbidden, NotFound, Unprocessable
from protocol.values import ContentType
from server.auth import Caller, required_admin, required_caller
from server.routes.live import pool_of, settings_of
from store import channels
from store.channels import Channel, Stream
from store.content import ContentRow

_T = TypeVar("_T")


def admin_only(request: web.Request) -> Caller:
    return required_admin(request, settings_of(request).jwt_secret)


def signed_in(request: web.Request) -> Caller:
    return required_caller(request, settings_of(request).jwt_secret)


def may_manage(caller: Caller, creator_id: str) -> None:
    if not (caller.is_admin or caller.user_id == creator_id):
        raise Forbidden("Admin role or the creator's own token required")


def found(value: _T | None, message: str, field: str) -> _T:
    """`value`, or a 404 naming `field` when the store found nothing."""
    if value is None:
        raise NotFound(message, field=field)
    return value


def owned_creator(request: web.Request, caller: Caller) -> str:
    """The path's creator_id, once the caller may manage it."""
    creator_id = request.match_info["creator_id"]
    may_manage(caller, creator_id)
    return creator_id


async def owned_channel(request: web.Request, caller: Caller) -> Channel:
    channel_id = request.match_info["channel_id"]
    channel = found(
        await channels.get_channel(pool_of(request), channel_id), "Channel not found", "channel_id"
    )
    may_manage(caller, channel.creator_id)
    return channel


def creator_out(c: channels.Creator) -> CreatorOut:
    return CreatorOut(
        creator_id=c.creator_id, name=c.name, is_verified=c.is_verified, created_at=c.created_at
    )


def channel_out(c: Channel) -> ChannelOut:
    return ChannelOut(
        channel_id=c.channel_id,
        creator_id=c.creator_id,
        channel_name=c.channel_name,
        channel_number=c.channel_number,
        requires_subscription=c.requires_subscription,
        created_at=c.created_at,
    )


def program_out(channel_id: str, p: Program) -> ProgramOut:
    return ProgramOut(
        program_id=p.program_id,
        channel_id=channel_id,
        title=p.title,
        starts_at=p.starts_at,
        ends_at=p.ends_at,
        description=p.description,
        thumbnail_url=p.thumbnail_url,
    )


def content_out(row: ContentRow) -> ContentOut:
    return ContentOut(
        content_id=row.content_id,
        creator_id=row.creator_id,
        type=ContentType(row.type),
        title=row.title,
        thumbnail_url=row.thumbnail_url,
        duration_seconds=row.duration_seconds,
        season=row.season,
        episode_number=row.episode_number,
        views=row.views,
        price=row.price,
        currency=row.currency,
        published_at=row.published_at,
    )


def stream_out(s: Stream, ended_sessions: int | None = None) -> StreamOut:
    return StreamOut(
        stream_id=s.stream_id,
        channel_id=s.channel_id,
        title=s.title,
        is_live=s.is_live,
        started_at=s.started_at,
        ended_at=s.ended_at,
        health=s.health,
        latency_mode=s.latency_mode,
        bitrate_kbps=s.bitrate_kbps,
        resolution=s.resolution,
        frame_rate=s.frame_rate,
        dvr_enabled=s.dvr_enabled,
        drm_enabled=s.drm_enabled,
        ended_sessions=ended_sessions,
    )


def valid_program(fields: Mapping[str, Any]) -> Program:
    try:
        return Program(**fields)
    except InvalidProgram as err:
        raise Unprocessable(str(err), field=err.field) from None
