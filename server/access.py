"""The outermost middleware: one access log line and the HTTP metrics per request.

It runs outside the error middleware (server.middleware), so it sees the
status the client gets (errors already mapped to the envelope) and the id
that middleware echoes in `X-Request-Id`; it puts that id in the logging
context (server.logs) for everything logged while the request is served.

Route labels are the matched resource's template (`/creators/{creator_id}/
channel/live`), never the raw path, so a scanner cannot grow the series;
an unmatched path is `unmatched`. Websocket upgrades are counted (status 101)
and logged when the socket ends, but kept out of the latency histogram: their
duration is the socket's life, not a response time. A request whose client
went away before the answer (cancelled) is logged and counted as status 499.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from aiohttp import web

from server.logs import REQUEST_ID_VAR
from server.metrics import METRICS
from server.middleware import Handler, request_id

__all__ = ["access_middleware", "route_of", "setup"]

log = logging.getLogger("droptv_live.access")

CLIENT_GONE: Final = 499


def route_of(request: web.Request) -> str:
    """The route template that matched, or `unmatched`."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id(request)
    token = REQUEST_ID_VAR.set(rid)
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as err:  # redirects: the error middleware lets them through
        status = err.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_GONE
        raise
    finally:
        elapsed = time.perf_counter() - start
        route = route_of(request)
        metrics = request.app.get(METRICS)
        if metrics is not None:
            labels = (request.method, route, str(status))
            metrics.requests.labels(*labels).inc()
            if status != 101:
                metrics.latency.labels(*labels).observe(elapsed)
        if log.isEnabledFor(logging.INFO):
            _log_line(request, route, status, elapsed, rid)
        REQUEST_ID_VAR.reset(token)


def _log_line(request: web.Request, route: str, status: int, elapsed: float, rid: str) -> None:
    log.info(
        "%s %s %d %.1fms",
        request.method,
        request.path,
        status,
        elapsed * 1000,
        extra={
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "request_id": rid,
        },
    )


def setup(app: web.Application) -> None:
    """Install the middleware outermost (after server.cors, so preflights are counted too)."""
    app.middlewares.insert(0, access_middleware)
