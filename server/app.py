"""create_app: the composition root. It builds the application and decides what starts when.

Start order (cleanup_ctx): PostgreSQL pool with the signer and heartbeat
batcher; then the real-time node (bus, presence, leases, timers, and the REST
read cache it keeps honest); then the
analytics writer (registered by server.routes.analytics). Shutdown runs in
reverse; `on_shutdown` first drains websockets with 1012 so clients move to
another instance. App state lives under the keys of server.state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from server import access, asyncapi, cors, health, openapi, scrape, ws
from server.config import Settings
from server.events import NoEvents
from server.middleware import error_middleware
from server.realtime import build
from server.routes import admin, analytics, hooks, ingest, live, ondemand, watch
from server.routes import web as pages
from server.signing import StreamSigner
from server.state import BEATS, CACHE, EVENTS, POOL, PRESENCE, REALTIME, SETTINGS, SIGNER
from store.heartbeats import HeartbeatBatcher
from store.pg import create_pool


async def _pg_ctx(app: web.Application) -> AsyncIterator[None]:
    """The pool and what shares it; closed gracefully, terminated if that fails."""
    settings = app[SETTINGS]
    assert settings.database_url, "database_url must be resolved before create_app"
    pool = await create_pool(
        settings.database_url, min_size=settings.pg_pool_min, max_size=settings.pg_pool_max
    )
    app[POOL] = pool
    app[SIGNER] = StreamSigner(pool, settings.signing_key, ttl=settings.stream_token_ttl)
    app[BEATS] = beats = HeartbeatBatcher(pool)
    yield
    try:
        await beats.close()
        await pool.close()
    except BaseException:
        pool.terminate()
        raise


async def _realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    """The real-time node; REST handlers notify it (app[EVENTS]) once it runs."""
    rt = build(app[SETTINGS], app[POOL], signer=app[SIGNER])
    try:
        await rt.start()
    except BaseException:
        await rt.stop()
        raise
    app[REALTIME] = rt
    app[EVENTS] = rt
    app[CACHE] = rt.cache
    app[PRESENCE] = rt.presence
    try:
        yield
    finally:
        await rt.stop()


async def _drain(app: web.Application) -> None:
    rt = app.get(REALTIME)
    if rt is not None:
        await rt.drain()


def create_app(settings: Settings) -> web.Application:
    """Build the application; resources open when the runner starts it."""
    app = web.Application(
        middlewares=[error_middleware(settings.request_timeout)], client_max_size=settings.max_body
    )
    app[SETTINGS] = settings
    app[EVENTS] = NoEvents()
    app.cleanup_ctx.append(_pg_ctx)
    app.cleanup_ctx.append(_realtime_ctx)
    app.on_shutdown.append(_drain)
    health.setup(app)
    app.router.add_get("/creators/{creator_id}/channel/live/ws", ws.handle)
    for module in (live, watch, ondemand, admin, analytics, openapi, scrape):
        module.setup(app)
    for module in (ingest, hooks, pages, asyncapi, cors):
        module.setup(app)
    access.setup(app)  # outermost: logs and counts every request, preflights included
    return app
