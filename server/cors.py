"""Browser origins: CORS for the REST API and the websocket `Origin` check.

`DROPTV_ALLOWED_ORIGINS` (Settings.allowed_origins) is a comma list of exact
origins (`scheme://host[:port]`, no path). Empty, the default, allows none:
only same-origin pages (such as /watch) can use the API from a browser.

- Preflight (`OPTIONS` with `Access-Control-Request-Method`) on any route:
  a listed origin gets 204 with `Access-Control-Allow-Origin` set to that
  origin (never `*`), the path's own methods, the headers a player sends
  (Authorization, Content-Type, X-Request-Id) and a 10-minute max age. An
  origin not listed gets 403 without any `Access-Control-*` header, and an
  unknown path 404, so the browser blocks the request.
- Actual requests from a listed origin get `Access-Control-Allow-Origin` and
  `Access-Control-Expose-Headers` (X-Request-Id, Retry-After) on every
  answer, errors included. No credentials mode: the API uses bearer tokens,
  not cookies.
- Websocket upgrades (`check_websocket_origin`, called by server.ws before the
  upgrade): when the list is set, an `Origin` that is neither listed nor the
  server's own host is refused with 403. A request without `Origin` passes:
  browsers always send one, so only non-browser clients (native players, the
  Python client) omit it, and they are not what cross-site checks protect.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from protocol.errors import ApiError
from server.middleware import error_response
from server.state import SETTINGS

__all__ = ["ORIGINS", "check_websocket_origin", "parse_origins", "setup"]

ORIGINS: Final = web.AppKey("allowed_origins", frozenset[str])
ALLOW_HEADERS: Final = "Authorization, Content-Type, X-Request-Id"
EXPOSE_HEADERS: Final = "X-Request-Id, Retry-After"
MAX_AGE: Final = "600"
_PREFLIGHT_VARY: Final = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def parse_origins(raw: str) -> frozenset[str]:
    """`"https://A.example, http://b:8080/"` → {"https://a.example", "http://b:8080"}."""
    return frozenset(o.strip().rstrip("/").lower() for o in raw.split(",") if o.strip())


def _same_host(request: web.Request, origin: str) -> bool:
    return urlsplit(origin).netloc == request.host.lower()


def _allowed(request: web.Request, origin: str) -> bool:
    return origin.lower() in request.app[ORIGINS]


def check_websocket_origin(request: web.Request) -> None:
    """Raise 403 when origins are configured and this upgrade's `Origin` is not one of them."""
    origin = request.headers.get("Origin")
    if not origin or not request.app[ORIGINS]:
        return
    if not (_allowed(request, origin) or _same_host(request, origin)):
        raise ApiError(f"Origin not allowed: {origin[:100]}", status=403, field="Origin")


def _methods(request: web.Request) -> str | None:
    """The methods the path serves, or None when no route has it."""
    exc = request.match_info.http_exception
    if isinstance(exc, web.HTTPMethodNotAllowed):
        methods = set(exc.allowed_methods)
    elif exc is None:
        methods = {request.match_info.route.method}
    else:
        return None
    methods.discard("*")
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods | {"OPTIONS"}))


def _preflight(request: web.Request, origin: str) -> web.Response:
    if not _allowed(request, origin):
        return error_response(403, f"Origin not allowed: {origin[:100]}", "Origin")
    methods = _methods(request)
    if methods is None:
        return error_response(404, "Not Found")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": MAX_AGE,
            "Vary": _PREFLIGHT_VARY,
        },
    )


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return _preflight(request, origin)
    response = await handler(request)
    if _allowed(request, origin) and not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        response.headers.add("Vary", "Origin")
    return response


def setup(app: web.Application) -> None:
    """Parse the allowed origins once and install the middleware outermost (errors get the
    headers too)."""
    app[ORIGINS] = parse_origins(app[SETTINGS].allowed_origins)
    app.middlewares.insert(0, cors_middleware)
