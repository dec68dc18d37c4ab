"""A channel's ingest credentials for its encoder, shown and rotated by admin routes.

    GET  /admin/channels/{channel_id}/ingest          -> IngestInfo
    POST /admin/channels/{channel_id}/ingest/rotate   -> IngestInfo (a new stream_key)

Who may call: an admin, or the channel's creator (as for the other admin
routes). The key is created on first read (store.ingest). `rtmp_url` is the
`rtmp_url` setting; `publish_url` is it with the key appended, what OBS calls
"Server" + "Stream Key" in one. Rotation refuses the old key for new
publishes at once; a broadcast running on it keeps going and may still end
through the unpublish hook.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from protocol.errors import Forbidden, NotFound
from protocol.ingest import IngestInfo
from server.auth import required_caller
from server.respond import ok
from server.state import POOL, SETTINGS
from store import channels, ingest
from store.ingest import IngestKey

__all__ = ["setup"]


async def _channel_id(request: web.Request) -> str:
    caller = required_caller(request, request.app[SETTINGS].jwt_secret)
    channel_id = request.match_info["channel_id"]
    channel = await channels.get_channel(request.app[POOL], channel_id)
    if channel is None:
        raise NotFound("Channel not found", field="channel_id")
    if not (caller.is_admin or caller.user_id == channel.creator_id):
        raise Forbidden("Admin role or the creator's own token required")
    return channel_id


async def _info(request: web.Request, key: IngestKey | None) -> web.Response:
    if key is None:  # the channel was deleted between the check and the write
        raise NotFound("Channel not found", field="channel_id")
    base = request.app[SETTINGS].rtmp_url.rstrip("/")
    live = await channels.get_live_stream(request.app[POOL], key.channel_id)
    return ok(
        IngestInfo(
            channel_id=key.channel_id,
            stream_key=key.stream_key,
            rtmp_url=base,
            publish_url=f"{base}/{key.stream_key}",
            rotated_at=key.rotated_at,
            is_live=live is not None,
        )
    )


async def show(request: web.Request) -> web.Response:
    channel_id = await _channel_id(request)
    return await _info(request, await ingest.ensure_key(request.app[POOL], channel_id))


async def rotate(request: web.Request) -> web.Response:
    channel_id = await _channel_id(request)
    return await _info(request, await ingest.rotate_key(request.app[POOL], channel_id))


def setup(app: web.Application) -> None:
    """Register the ingest admin routes."""
    app.router.add_get("/admin/channels/{channel_id}/ingest", show)
    app.router.add_post("/admin/channels/{channel_id}/ingest/rotate", rotate)


DEMO_CHANNEL = "ch_101"


async def demo_key_banner(pool: asyncpg.Pool, rtmp_url: str) -> str:
    """The lines `seed --demo` and a first `serve` print: ch_101's key and where to publish."""
    key = await ingest.ensure_key(pool, DEMO_CHANNEL)
    if key is None:
        return f"{DEMO_CHANNEL} not found: no stream key"
    base = rtmp_url.rstrip("/")
    return (
        f"{DEMO_CHANNEL} stream key: {key.stream_key}\n"
        f"  publish to {base}/{key.stream_key} (e.g. OBS server {base}, key as above)"
    )
