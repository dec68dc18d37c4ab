"""Every `web.AppKey` of the application, in one place: what app state exists and its type.

server/app.py fills them (in cleanup_ctx order); handlers and the metrics
collector read them. Importing this module starts nothing.
"""

from __future__ import annotations

from typing import Final

import asyncpg
from aiohttp import web

from server.cache import ChannelCache
from server.config import Settings
from server.events import ChannelEvents
from server.realtime import Realtime
from server.signing import StreamSigner
from store.heartbeats import HeartbeatBatcher
from store.presence import Presence

__all__ = [
    "BEATS",
    "CACHE",
    "EVENTS",
    "POOL",
    "PRESENCE",
    "REALTIME",
    "SETTINGS",
    "SIGNER",
    "SNDBUF_CAPPED",
]

SETTINGS: Final = web.AppKey("settings", Settings)
POOL: Final = web.AppKey("pool", asyncpg.Pool)
# What REST handlers notify after a commit: the real-time node, or NoEvents before it starts.
EVENTS: Final = web.AppKey("events", ChannelEvents)
# The one stream-token signer of the process (REST and websocket mint with it).
SIGNER: Final = web.AppKey("signer", StreamSigner)
CACHE: Final = web.AppKey("cache", ChannelCache)
BEATS: Final = web.AppKey("beats", HeartbeatBatcher)
# Who is watching now (store.presence): this instance's shares, REST pollers, counts.
PRESENCE: Final = web.AppKey("presence", Presence)
REALTIME: Final = web.AppKey("realtime", Realtime)
# Set by server.serving when its listening socket caps SO_SNDBUF for every accepted socket.
SNDBUF_CAPPED: Final = web.AppKey("sndbuf_capped", bool)
