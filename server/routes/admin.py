"""Admin API: creators, channels, EPG programs, on-demand content, going live, entitlements.

Bodies are the msgspec types of protocol.rest (see /openapi.json). Who may
call: a bearer with `role: admin` may do everything; a creator (bearer sub ==
creator_id) may manage their own creator record, channel, programs, content
and streams; creating creators, verifying them and granting entitlements is admin-only.
401 without a valid bearer, 403 otherwise not allowed, 404 unknown target,
409 duplicate id / channel number or channel already live, 422 naming the
field for bad input. PATCH bodies change only the fields they contain.

    POST   /admin/creators                        CreatorIn      -> 201 CreatorOut
    PATCH  /admin/creators/{creator_id}           CreatorPatch   -> CreatorOut
    POST   /admin/creators/{creator_id}/channel   ChannelIn      -> 201 ChannelOut
    PATCH  /admin/channels/{channel_id}           ChannelPatch   -> ChannelOut
    POST   /admin/channels/{channel_id}/programs  ProgramIn      -> 201 ProgramOut
    PATCH  /admin/programs/{program_id}           ProgramPatch   -> ProgramOut
    DELETE /admin/programs/{program_id}                          -> ProgramDeleted
    POST   /admin/creators/{creator_id}/content   ContentIn      -> 201 ContentOut
    PATCH  /admin/content/{content_id}            ContentPatch   -> ContentOut
    DELETE /admin/content/{content_id}                           -> ContentDeleted
    POST   /admin/channels/{channel_id}/live      GoLive         -> 201 StreamOut (409 if live)
    PATCH  /admin/channels/{channel_id}/live      StreamPatch    -> StreamOut (404 if offline)
    DELETE /admin/channels/{channel_id}/live                     -> StreamOut (404 if offline)
    POST   /admin/channels/{channel_id}/stream-key/rotate        -> StreamKeyRotated
    POST   /admin/entitlements                    EntitlementIn  -> 201 EntitlementOut

After each commit the real-time layer is told: schedule_changed for program
writes, stream_changed for go-live / offline / stream changes (offline also
viewers_changed: it ends the stream's watch sessions, reason
"stream_offline"; websockets learn it from touch_sessions or the event).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from protocol.epg import InvalidProgram, Program
from protocol.errors import Forbidden, NotFound, Unprocessable
from protocol.rest import (
    ChannelIn,
    ChannelOut,
    ChannelPatch,
    ContentDeleted,
    ContentIn,
    ContentOut,
    ContentPatch,
    ContentType,
    CreatorIn,
    CreatorOut,
    CreatorPatch,
    EntitlementIn,
    EntitlementKind,
    EntitlementOut,
    GoLive,
    LatencyMode,
    ProgramDeleted,
    ProgramIn,
    ProgramOut,
    ProgramPatch,
    StreamHealth,
    StreamKeyRotated,
    StreamOut,
    StreamPatch,
    changes,
)
from server.app import EVENTS, SIGNER
from server.auth import Caller, key_id, required_admin, required_caller
from server.respond import body_as, ok
from server.routes.live import notify, pool_of, settings_of
from store import channels, content
from store.channels import Channel, Stream
from store.content import ContentRow

Handler = Callable[[web.Request], Awaitable[web.Response]]
_T = TypeVar("_T")


def _admin(request: web.Request) -> Caller:
    return required_admin(request, settings_of(request).jwt_secret)


def _caller(request: web.Request) -> Caller:
    return required_caller(request, settings_of(request).jwt_secret)


def _may_manage(caller: Caller, creator_id: str) -> None:
    if not (caller.is_admin or caller.user_id == creator_id):
        raise Forbidden("Admin role or the creator's own token required")


def _found(value: _T | None, message: str, field: str) -> _T:
    """`value`, or a 404 naming `field` when the store found nothing."""
    if value is None:
        raise NotFound(message, field=field)
    return value


def _owned_creator(request: web.Request, caller: Caller) -> str:
    """The path's creator_id, once the caller may manage it."""
    creator_id = request.match_info["creator_id"]
    _may_manage(caller, creator_id)
    return creator_id


async def _channel(request: web.Request, caller: Caller) -> Channel:
    channel_id = request.match_info["channel_id"]
    channel = _found(
        await channels.get_channel(pool_of(request), channel_id), "Channel not found", "channel_id"
    )
    _may_manage(caller, channel.creator_id)
    return channel


def _creator_out(c: channels.Creator) -> CreatorOut:
    return CreatorOut(
        creator_id=c.creator_id, name=c.name, is_verified=c.is_verified, created_at=c.created_at
    )


def _channel_out(c: Channel) -> ChannelOut:
    return ChannelOut(
        channel_id=c.channel_id,
        creator_id=c.creator_id,
        channel_name=c.channel_name,
        channel_number=c.channel_number,
        requires_subscription=c.requires_subscription,
        created_at=c.created_at,
    )


def _program_out(channel_id: str, p: Program) -> ProgramOut:
    return ProgramOut(
        program_id=p.program_id,
        channel_id=channel_id,
        title=p.title,
        starts_at=p.starts_at,
        ends_at=p.ends_at,
        description=p.description,
        thumbnail_url=p.thumbnail_url,
    )


def _content_out(row: ContentRow) -> ContentOut:
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


def _stream_out(s: Stream, ended_sessions: int | None = None) -> StreamOut:
    return StreamOut(
        stream_id=s.stream_id,
        channel_id=s.channel_id,
        title=s.title,
        is_live=s.is_live,
        started_at=s.started_at,
        ended_at=s.ended_at,
        health=StreamHealth(s.health),
        latency_mode=LatencyMode(s.latency_mode),
        bitrate_kbps=s.bitrate_kbps,
        resolution=s.resolution,
        frame_rate=s.frame_rate,
        dvr_enabled=s.dvr_enabled,
        drm_enabled=s.drm_enabled,
        ended_sessions=ended_sessions,
    )


def _program(fields: Mapping[str, Any]) -> Program:
    try:
        return Program(**fields)
    except InvalidProgram as err:
        raise Unprocessable(str(err), field=err.field) from None


# --- creators and channels ----------------------------------------------------------------


async def create_creator(request: web.Request) -> web.Response:
    _admin(request)
    body = await body_as(request, CreatorIn)
    creator = await channels.create_creator(
        pool_of(request), creator_id=body.creator_id, name=body.name, is_verified=body.is_verified
    )
    return ok(_creator_out(creator), status=201)


async def update_creator(request: web.Request) -> web.Response:
    caller = _caller(request)
    creator_id = _owned_creator(request, caller)
    body = await body_as(request, CreatorPatch)
    delta = changes(body)
    if "is_verified" in delta and not caller.is_admin:
        raise Forbidden("Only an admin can change is_verified", field="is_verified")
    creator = _found(
        await channels.update_creator(pool_of(request), creator_id, delta),
        "Creator not found",
        "creator_id",
    )
    return ok(_creator_out(creator))


async def create_channel(request: web.Request) -> web.Response:
    caller = _caller(request)
    creator_id = _owned_creator(request, caller)
    body = await body_as(request, ChannelIn)
    channel = await channels.create_channel(
        pool_of(request),
        creator_id=creator_id,
        channel_id=body.channel_id,
        channel_name=body.channel_name,
        channel_number=body.channel_number,
        requires_subscription=body.requires_subscription,
    )
    return ok(_channel_out(channel), status=201)


async def update_channel(request: web.Request) -> web.Response:
    caller = _caller(request)
    channel = await _channel(request, caller)
    body = await body_as(request, ChannelPatch)
    delta = changes(body)
    updated = _found(
        await channels.update_channel(pool_of(request), channel.channel_id, delta),
        "Channel not found",
        "channel_id",
    )
    return ok(_channel_out(updated))


# --- programs -----------------------------------------------------------------------------


async def create_program(request: web.Request) -> web.Response:
    caller = _caller(request)
    channel = await _channel(request, caller)
    body = await body_as(request, ProgramIn)
    program = _program(changes(body))
    stored = await channels.create_program(pool_of(request), channel.channel_id, program)
    await notify(request.app[EVENTS].schedule_changed(channel.channel_id))
    return ok(_program_out(channel.channel_id, stored), status=201)


async def _owned_program(request: web.Request, caller: Caller) -> tuple[str, Program]:
    pool = pool_of(request)
    found = await channels.get_program(pool, request.match_info["program_id"])
    channel = await channels.get_channel(pool, found[0]) if found else None
    if found is None or channel is None:
        raise NotFound("Program not found", field="program_id")
    _may_manage(caller, channel.creator_id)
    return found


async def update_program(request: web.Request) -> web.Response:
    caller = _caller(request)
    channel_id, current = await _owned_program(request, caller)
    body = await body_as(request, ProgramPatch)
    merged = _program(
        {**{f: getattr(current, f) for f in current.__struct_fields__}, **changes(body)}
    )
    stored = _found(
        await channels.update_program(pool_of(request), current.program_id, merged),
        "Program not found",
        "program_id",
    )
    await notify(request.app[EVENTS].schedule_changed(channel_id))
    return ok(_program_out(channel_id, stored))


async def delete_program(request: web.Request) -> web.Response:
    caller = _caller(request)
    _, current = await _owned_program(request, caller)
    channel_id = _found(
        await channels.delete_program(pool_of(request), current.program_id),
        "Program not found",
        "program_id",
    )
    await notify(request.app[EVENTS].schedule_changed(channel_id))
    return ok(ProgramDeleted(program_id=current.program_id, channel_id=channel_id, deleted=True))


# --- on-demand content --------------------------------------------------------------------


def _check_price(kind: str, price: float | None, currency: str | None) -> None:
    if kind == ContentType.PPV:
        if price is None:
            raise Unprocessable("price is required for ppv content", field="price")
        if currency is None:
            raise Unprocessable("currency is required for ppv content", field="currency")
    elif price is not None or currency is not None:
        raise Unprocessable("price and currency are only for ppv content", field="price")


async def create_content(request: web.Request) -> web.Response:
    caller = _caller(request)
    creator_id = _owned_creator(request, caller)
    body = await body_as(request, ContentIn)
    _check_price(body.type, body.price, body.currency)
    row = await content.create_content(
        pool_of(request), {**changes(body), "creator_id": creator_id}
    )
    return ok(_content_out(row), status=201)


async def _owned_content(request: web.Request, caller: Caller) -> ContentRow:
    row = _found(
        await content.get_content(pool_of(request), request.match_info["content_id"]),
        "Content not found",
        "content_id",
    )
    _may_manage(caller, row.creator_id)
    return row


async def update_content(request: web.Request) -> web.Response:
    caller = _caller(request)
    row = await _owned_content(request, caller)
    body = await body_as(request, ContentPatch)
    delta = changes(body)
    merged = {**{f: getattr(row, f) for f in ("type", "price", "currency")}, **delta}
    _check_price(str(merged["type"]), merged["price"], merged["currency"])
    updated = _found(
        await content.update_content(pool_of(request), row.content_id, delta),
        "Content not found",
        "content_id",
    )
    return ok(_content_out(updated))


async def delete_content(request: web.Request) -> web.Response:
    caller = _caller(request)
    row = await _owned_content(request, caller)
    deleted = await content.delete_content(pool_of(request), row.content_id)
    return ok(ContentDeleted(content_id=row.content_id, deleted=deleted))


# --- streams ------------------------------------------------------------------------------


async def go_live(request: web.Request) -> web.Response:
    caller = _caller(request)
    channel = await _channel(request, caller)
    body = await body_as(request, GoLive)
    settings = {k: v for k, v in changes(body).items() if k != "stream_id"}
    stream = await channels.go_live(
        pool_of(request),
        channel.channel_id,
        body.stream_id or "stream_" + secrets.token_hex(6),
        settings,
    )
    await notify(request.app[EVENTS].stream_changed(channel.channel_id))
    return ok(_stream_out(stream), status=201)


async def update_stream(request: web.Request) -> web.Response:
    caller = _caller(request)
    channel = await _channel(request, caller)
    body = await body_as(request, StreamPatch)
    delta = changes(body)
    stream = _found(
        await channels.update_stream(pool_of(request), channel.channel_id, delta),
        "Channel is not live",
        "channel_id",
    )
    await notify(request.app[EVENTS].stream_changed(channel.channel_id))
    return ok(_stream_out(stream))


async def go_offline(request: web.Request) -> web.Response:
    caller = _caller(request)
    channel = await _channel(request, caller)
    stream, ended = _found(
        await channels.go_offline(pool_of(request), channel.channel_id),
        "Channel is not live",
        "channel_id",
    )
    events = request.app[EVENTS]
    await notify(events.stream_changed(channel.channel_id))
    await notify(events.viewers_changed(channel.channel_id))
    return ok(_stream_out(stream, ended_sessions=len(ended)))


async def rotate_stream_key(request: web.Request) -> web.Response:
    """New key version for the channel; old tokens stay valid until they expire (see server.signing)."""
    caller = _caller(request)
    channel = await _channel(request, caller)
    version = _found(
        await channels.rotate_stream_key(pool_of(request), channel.channel_id),
        "Channel not found",
        "channel_id",
    )
    request.app[SIGNER].forget(channel.channel_id)
    await notify(request.app[EVENTS].tokens_rotated(channel.channel_id))
    return ok(
        StreamKeyRotated(
            channel_id=channel.channel_id,
            key_version=version,
            kid=key_id(channel.channel_id, version),
        )
    )


# --- entitlements -------------------------------------------------------------------------


async def grant_entitlement(request: web.Request) -> web.Response:
    _admin(request)
    body = await body_as(request, EntitlementIn)
    pool = pool_of(request)
    if body.kind == EntitlementKind.PPV:
        if body.content_id is None:
            raise Unprocessable("content_id is required for a ppv entitlement", field="content_id")
        await channels.grant_ppv(pool, body.user_id, body.content_id)
    elif body.creator_id is None:
        raise Unprocessable(
            f"creator_id is required for a {body.kind} entitlement", field="creator_id"
        )
    elif body.kind == EntitlementKind.FOLLOW:
        await channels.grant_follow(pool, body.user_id, body.creator_id)
    else:
        await channels.grant_subscription(pool, body.user_id, body.creator_id, body.expires_at)
    is_ppv = body.kind == EntitlementKind.PPV
    return ok(
        EntitlementOut(
            user_id=body.user_id,
            kind=body.kind,
            creator_id=None if is_ppv else body.creator_id,
            content_id=body.content_id if is_ppv else None,
            expires_at=body.expires_at if body.kind == EntitlementKind.SUBSCRIPTION else None,
        ),
        status=201,
    )


def setup(app: web.Application) -> None:
    """Register the admin routes (see the module docstring)."""
    r = app.router
    r.add_post("/admin/creators", create_creator)
    r.add_patch("/admin/creators/{creator_id}", update_creator)
    r.add_post("/admin/creators/{creator_id}/channel", create_channel)
    r.add_patch("/admin/channels/{channel_id}", update_channel)
    r.add_post("/admin/channels/{channel_id}/programs", create_program)
    r.add_patch("/admin/programs/{program_id}", update_program)
    r.add_delete("/admin/programs/{program_id}", delete_program)
    r.add_post("/admin/creators/{creator_id}/content", create_content)
    r.add_patch("/admin/content/{content_id}", update_content)
    r.add_delete("/admin/content/{content_id}", delete_content)
    r.add_post("/admin/channels/{channel_id}/live", go_live)
    r.add_patch("/admin/channels/{channel_id}/live", update_stream)
    r.add_delete("/admin/channels/{channel_id}/live", go_offline)
    r.add_post("/admin/channels/{channel_id}/stream-key/rotate", rotate_stream_key)
    r.add_post("/admin/entitlements", grant_entitlement)
