"""create_app: the aiohttp application, its typed state and the order resources start in.

Start order (cleanup_ctx): PostgreSQL pool, then the real-time layer (bus,
presence, hub, timers). Shutdown runs in reverse; `on_shutdown` closes
websockets with 1012 first so clients move to another instance.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from server.cache import ChannelCache
from server.config import Settings
from server.events import ChannelEvents, NoEvents
from server.middleware import error_middleware
from server.signing import StreamSigner
from store.heartbeats import HeartbeatBatcher
from store.pg import create_pool

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
EVENTS = web.AppKey("events", ChannelEvents)
SIGNER = web.AppKey("signer", StreamSigner)
CACHE = web.AppKey("cache", ChannelCache)
BEATS = web.AppKey("beats", HeartbeatBatcher)


async def _pg_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url, "database_url must be resolved before create_app"
    pool = await create_pool(
        settings.database_url, min_size=settings.pg_pool_min, max_size=settings.pg_pool_max
    )
    app[POOL] = pool
    app[SIGNER] = StreamSigner(pool, settings.signing_key, ttl=settings.stream_token_ttl)
    app[CACHE] = ChannelCache(
        pool, max_age=settings.viewer_interval, session_ttl=settings.session_ttl
    )
    app[BEATS] = beats = HeartbeatBatcher(pool)
    yield
    try:
        await beats.close()
        await pool.close()
    except BaseException:
        pool.terminate()
        raise


async def _health(request: web.Request) -> web.Response:
    """Liveness for load balancers; `pid` tells which worker of `--workers N` answered."""
    return web.json_response({"status": "ok", "pid": os.getpid()})


def create_app(settings: Settings) -> web.Application:
    """Build the application; resources open when the runner starts it."""
    from server import asyncapi, cors, metrics, openapi, realtime
    from server.routes import web as pages
    from server.routes import admin, analytics, hooks, ingest, live, ondemand, watch

    app = web.Application(
        middlewares=[error_middleware(settings.request_timeout)], client_max_size=settings.max_body
    )
    app[SETTINGS] = settings
    app[EVENTS] = NoEvents()
    app.cleanup_ctx.append(_pg_ctx)
    app.router.add_get("/healthz", _health)
    for module in (live, watch, ondemand, admin, analytics, openapi, metrics, realtime):
        module.setup(app)
    for module in (ingest, hooks, pages, asyncapi, cors):
        module.setup(app)
    return app
