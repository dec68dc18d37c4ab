"""Taking a channel live or offline: one code path for the admin API and the ingest hooks.

`start_stream` and `end_stream` run the store's transaction, then tell the
real-time layer exactly what the admin routes always told it: go-live is
`stream_changed` (watchers get `stream` and fresh tokens); offline is
`stream_changed` then `viewers_changed` (the stream's watch sessions ended
with it, reason "stream_offline", so their sockets close with 4009). The
notification runs after the commit, so a failing bus only logs
(server.routes.live.notify).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from protocol.epg import current_program
from server.routes.live import notify
from server.state import EVENTS, POOL
from store import channel_writes, channels
from store.channels import Stream
from store.errors import Conflict

__all__ = ["end_stream", "new_stream_id", "start_stream", "start_stream_once"]


def new_stream_id() -> str:
    return "stream_" + secrets.token_hex(6)


async def start_stream(
    app: web.Application, channel_id: str, stream_id: str, settings: Mapping[str, Any]
) -> Stream:
    """A new live stream on the channel; raises store Conflict if it is live already."""
    stream = await channel_writes.go_live(app[POOL], channel_id, stream_id, settings)
    await notify(app[EVENTS].stream_changed(channel_id))
    return stream


async def end_stream(app: web.Application, channel_id: str) -> tuple[Stream, list[str]] | None:
    """End the live stream and its sessions; None (and no notification) if it was offline."""
    ended = await channel_writes.go_offline(app[POOL], channel_id)
    if ended is not None:
        events = app[EVENTS]
        await notify(events.stream_changed(channel_id))
        await notify(events.viewers_changed(channel_id))
    return ended


async def start_stream_once(app: web.Application, channel_id: str) -> tuple[Stream, bool]:
    """The channel's live stream and whether this call started it (an encoder connecting).

    Idempotent: when the channel is live already (a repeated hook, or two hooks
    racing) the existing stream is returned and nothing is notified. The new
    stream's title is the program on air, else the channel's name.
    """
    pool = app[POOL]
    live = await channels.get_live_stream(pool, channel_id)
    if live is not None:
        return live, False
    now = datetime.now(UTC)
    on_air = current_program(await channels.programs_between(pool, channel_id, now, now), now)
    channel = await channels.get_channel(pool, channel_id)
    title = on_air.title if on_air else (channel.channel_name if channel else channel_id)
    try:
        return await start_stream(app, channel_id, new_stream_id(), {"title": title}), True
    except Conflict:
        live = await channels.get_live_stream(pool, channel_id)
        if live is None:
            raise
        return live, False
