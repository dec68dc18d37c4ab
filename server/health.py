"""`GET /healthz` (alive) and `GET /readyz` (ready to take traffic), for load balancers and probes.

`/healthz` answers 200 whenever the process serves HTTP at all: restart the
instance only when it fails. `/readyz` answers 200 only when this instance
can do its job, checked afresh on each call, each check bounded by
CHECK_TIMEOUT: PostgreSQL answers `select 1` from the pool; with a Redis URL,
Redis answers PING and the bus's subscriber link is connected; the
real-time node has started and is not draining. Otherwise 503 with a JSON
body naming every failed check (`{"status":"not_ready","checks":{"redis":
"unreachable: ..."},"not_ready":["redis","bus"]}`): take the instance out of
rotation, do not restart it — it reconnects by itself. Neither needs a token.
"""

from __future__ import annotations

import asyncio
import os
from typing import Final

from aiohttp import web

from server.state import POOL, REALTIME, SETTINGS
from store.bus import RedisBus

__all__ = ["CHECK_TIMEOUT", "readiness", "setup"]

CHECK_TIMEOUT: Final = 2.0
OK: Final = "ok"


def _reason(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT:g} s"
    return f"unreachable: {type(err).__name__}: {err}"[:300]


async def _postgres(app: web.Application) -> str:
    pool = app.get(POOL)
    if pool is None:
        return "starting"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await pool.fetchval("select 1")
    except Exception as err:  # noqa: BLE001 - any failure is "not ready", named in the body
        return _reason(err)
    return OK


async def _redis(app: web.Application) -> str:
    rt = app.get(REALTIME)
    if rt is None or rt.redis is None:
        return "starting"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await rt.redis.ping()
    except Exception as err:  # noqa: BLE001 - as above
        return _reason(err)
    return OK


def _bus(app: web.Application) -> str:
    rt = app.get(REALTIME)
    if rt is None:
        return "starting"
    bus = rt.bus
    if not isinstance(bus, RedisBus):
        return OK
    # A cluster bus opens a link per node on the first subscribe: none yet is not a fault.
    if bus.connected or (bus.cluster and not bus._links):
        return OK
    return "subscriber link down (reconnecting)"


async def readiness(app: web.Application) -> dict[str, str]:
    """Each check's verdict, "ok" or why not."""
    checks: dict[str, str] = {}
    rt = app.get(REALTIME)
    checks["realtime"] = "draining" if rt is not None and rt.hub.draining else OK
    if rt is None:
        checks["realtime"] = "starting"
    if app[SETTINGS].redis_url:
        pg, redis = await asyncio.gather(_postgres(app), _redis(app))
        checks.update(postgres=pg, redis=redis, bus=_bus(app))
    else:
        checks["postgres"] = await _postgres(app)
    return checks


async def _healthz(request: web.Request) -> web.Response:
    """Liveness; `pid` tells which worker of `--workers N` answered."""
    return web.json_response({"status": "ok", "pid": os.getpid()})


async def _readyz(request: web.Request) -> web.Response:
    checks = await readiness(request.app)
    failed = [name for name, verdict in checks.items() if verdict != OK]
    body = {
        "status": "not_ready" if failed else "ready",
        "pid": os.getpid(),
        "checks": checks,
        "not_ready": failed,
    }
    return web.json_response(body, status=503 if failed else 200)


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
