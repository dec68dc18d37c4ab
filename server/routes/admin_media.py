"""Admin handlers for on-demand content, live streams and entitlements (routes: server/routes/admin.py).

Stream writes tell the real-time layer `stream_changed` after the commit
(offline also `viewers_changed`: it ends the stream's watch sessions, reason
"stream_offline"); a stream-key rotation tells it `tokens_rotated`.
Granting entitlements is admin-only.
"""

from __future__ import annotations

from aiohttp import web

from protocol.admin import (
    ContentDeleted,
    ContentIn,
    ContentPatch,
    EntitlementIn,
    EntitlementOut,
    GoLive,
    StreamKeyRotated,
    StreamPatch,
    changes,
)
from protocol.errors import Unprocessable
from protocol.values import ContentType, EntitlementKind
from server.auth import Caller, key_id
from server.respond import body_as, ok
from server.routes import golive
from server.routes.admin_common import (
    admin_only,
    content_out,
    found,
    may_manage,
    owned_channel,
    owned_creator,
    signed_in,
    stream_out,
)
from server.routes.live import notify, pool_of
from server.state import EVENTS, SIGNER
from store import channel_writes, content
from store.content import ContentRow

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
    caller = signed_in(request)
    creator_id = owned_creator(request, caller)
    body = await body_as(request, ContentIn)
    _check_price(body.type, body.price, body.currency)
    row = await content.create_content(
        pool_of(request), {**changes(body), "creator_id": creator_id}
    )
    return ok(content_out(row), status=201)


async def _owned_content(request: web.Request, caller: Caller) -> ContentRow:
    row = found(
        await content.get_content(pool_of(request), request.match_info["content_id"]),
        "Content not found",
        "content_id",
    )
    may_manage(caller, row.creator_id)
    return row


async def update_content(request: web.Request) -> web.Response:
    caller = signed_in(request)
    row = await _owned_content(request, caller)
    body = await body_as(request, ContentPatch)
    delta = changes(body)
    merged = {**{f: getattr(row, f) for f in ("type", "price", "currency")}, **delta}
    _check_price(str(merged["type"]), merged["price"], merged["currency"])
    updated = found(
        await content.update_content(pool_of(request), row.content_id, delta),
        "Content not found",
        "content_id",
    )
    return ok(content_out(updated))


async def delete_content(request: web.Request) -> web.Response:
    caller = signed_in(request)
    row = await _owned_content(request, caller)
    deleted = await content.delete_content(pool_of(request), row.content_id)
    return ok(ContentDeleted(content_id=row.content_id, deleted=deleted))


# --- streams ------------------------------------------------------------------------------


async def go_live(request: web.Request) -> web.Response:
    caller = signed_in(request)
    channel = await owned_channel(request, caller)
    body = await body_as(request, GoLive)
    settings = {k: v for k, v in changes(body).items() if k != "stream_id"}
    stream = await golive.start_stream(
        request.app, channel.channel_id, body.stream_id or golive.new_stream_id(), settings
    )
    return ok(stream_out(stream), status=201)


async def update_stream(request: web.Request) -> web.Response:
    caller = signed_in(request)
    channel = await owned_channel(request, caller)
    body = await body_as(request, StreamPatch)
    delta = changes(body)
    stream = found(
        await channel_writes.update_stream(pool_of(request), channel.channel_id, delta),
        "Channel is not live",
        "channel_id",
    )
    await notify(request.app[EVENTS].stream_changed(channel.channel_id))
    return ok(stream_out(stream))


async def go_offline(request: web.Request) -> web.Response:
    caller = signed_in(request)
    channel = await owned_channel(request, caller)
    stream, ended = found(
        await golive.end_stream(request.app, channel.channel_id),
        "Channel is not live",
        "channel_id",
    )
    return ok(stream_out(stream, ended_sessions=len(ended)))


async def rotate_stream_key(request: web.Request) -> web.Response:
    """New key version for the channel; old tokens stay valid until they expire (see server.signing)."""
    caller = signed_in(request)
    channel = await owned_channel(request, caller)
    version = found(
        await channel_writes.rotate_stream_key(pool_of(request), channel.channel_id),
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
    admin_only(request)
    body = await body_as(request, EntitlementIn)
    pool = pool_of(request)
    if body.kind == EntitlementKind.PPV:
        if body.content_id is None:
            raise Unprocessable("content_id is required for a ppv entitlement", field="content_id")
        await channel_writes.grant_ppv(pool, body.user_id, body.content_id)
    elif body.creator_id is None:
        raise Unprocessable(
            f"creator_id is required for a {body.kind} entitlement", field="creator_id"
        )
    elif body.kind == EntitlementKind.FOLLOW:
        await channel_writes.grant_follow(pool, body.user_id, body.creator_id)
    else:
        await channel_writes.grant_subscription(
            pool, body.user_id, body.creator_id, body.expires_at
        )
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
