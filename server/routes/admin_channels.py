"""Admin handlers for creators, channels and their EPG programs (routes: server/routes/admin.py).

Program writes tell the real-time layer `schedule_changed` after the commit,
so watchers get an `epg` message when the current or next program changed.
"""

from __future__ import annotations

from aiohttp import web

from protocol.admin import (
    ChannelIn,
    ChannelPatch,
    CreatorIn,
    CreatorPatch,
    ProgramDeleted,
    ProgramIn,
    ProgramPatch,
    changes,
)
from protocol.epg import Program
from protocol.errors import Forbidden, NotFound
from server.auth import Caller
from server.respond import body_as, ok
from server.routes.admin_common import (
    admin_only,
    channel_out,
    creator_out,
    found,
    may_manage,
    owned_channel,
    owned_creator,
    program_out,
    signed_in,
    valid_program,
)
from server.routes.live import notify, pool_of
from server.state import EVENTS
from store import channel_writes, channels

# --- creators and channels ----------------------------------------------------------------


async def create_creator(request: web.Request) -> web.Response:
    admin_only(request)
    body = await body_as(request, CreatorIn)
    creator = await channel_writes.create_creator(
        pool_of(request), creator_id=body.creator_id, name=body.name, is_verified=body.is_verified
    )
    return ok(creator_out(creator), status=201)


async def update_creator(request: web.Request) -> web.Response:
    caller = signed_in(request)
    creator_id = owned_creator(request, caller)
    body = await body_as(request, CreatorPatch)
    delta = changes(body)
    if "is_verified" in delta and not caller.is_admin:
        raise Forbidden("Only an admin can change is_verified", field="is_verified")
    creator = found(
        await channel_writes.update_creator(pool_of(request), creator_id, delta),
        "Creator not found",
        "creator_id",
    )
    return ok(creator_out(creator))


async def create_channel(request: web.Request) -> web.Response:
    caller = signed_in(request)
    creator_id = owned_creator(request, caller)
    body = await body_as(request, ChannelIn)
    channel = await channel_writes.create_channel(
        pool_of(request),
        creator_id=creator_id,
        channel_id=body.channel_id,
        channel_name=body.channel_name,
        channel_number=body.channel_number,
        requires_subscription=body.requires_subscription,
    )
    return ok(channel_out(channel), status=201)


async def update_channel(request: web.Request) -> web.Response:
    caller = signed_in(request)
    channel = await owned_channel(request, caller)
    body = await body_as(request, ChannelPatch)
    delta = changes(body)
    updated = found(
        await channel_writes.update_channel(pool_of(request), channel.channel_id, delta),
        "Channel not found",
        "channel_id",
    )
    return ok(channel_out(updated))


# --- programs -----------------------------------------------------------------------------


async def create_program(request: web.Request) -> web.Response:
    caller = signed_in(request)
    channel = await owned_channel(request, caller)
    body = await body_as(request, ProgramIn)
    program = valid_program(changes(body))
    stored = await channel_writes.create_program(pool_of(request), channel.channel_id, program)
    await notify(request.app[EVENTS].schedule_changed(channel.channel_id))
    return ok(program_out(channel.channel_id, stored), status=201)


async def _owned_program(request: web.Request, caller: Caller) -> tuple[str, Program]:
    pool = pool_of(request)
    hit = await channels.get_program(pool, request.match_info["program_id"])
    channel = await channels.get_channel(pool, hit[0]) if hit else None
    if hit is None or channel is None:
        raise NotFound("Program not found", field="program_id")
    may_manage(caller, channel.creator_id)
    return hit


async def update_program(request: web.Request) -> web.Response:
    caller = signed_in(request)
    channel_id, current = await _owned_program(request, caller)
    body = await body_as(request, ProgramPatch)
    merged = valid_program(
        {**{f: getattr(current, f) for f in current.__struct_fields__}, **changes(body)}
    )
    stored = found(
        await channel_writes.update_program(pool_of(request), current.program_id, merged),
        "Program not found",
        "program_id",
    )
    await notify(request.app[EVENTS].schedule_changed(channel_id))
    return ok(program_out(channel_id, stored))


async def delete_program(request: web.Request) -> web.Response:
    caller = signed_in(request)
    _, current = await _owned_program(request, caller)
    channel_id = found(
        await channel_writes.delete_program(pool_of(request), current.program_id),
        "Program not found",
        "program_id",
    )
    await notify(request.app[EVENTS].schedule_changed(channel_id))
    return ok(ProgramDeleted(program_id=current.program_id, channel_id=channel_id, deleted=True))
