"""The one place where errors become a status and the error envelope.

Client faults (ApiError) keep their status and message; aiohttp's own HTTP
errors (unknown route, wrong method, body too large) get the same envelope;
an unreachable database is a 503 with Retry-After; anything else is logged
and answered 500 without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from protocol.codec import encode
from protocol.errors import ApiError, ErrorEnvelope, ServiceUnavailable
from store.errors import StoreUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_UNAVAILABLE = (
    StoreUnavailable,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    ConnectionError,
    OSError,
)


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = encode(ErrorEnvelope(status="error", code=status, message=message, field=field))
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ServiceUnavailable as err:
        return error_response(
            err.status, err.message, headers={"Retry-After": str(err.retry_after)}
        )
    except ApiError as err:
        return error_response(err.status, err.message, err.field)
    except web.HTTPRequestEntityTooLarge as err:
        return error_response(413, f"Request body too large: {err.text}", "body")
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return error_response(
            err.status,
            err.reason,
            headers={k: v for k, v in err.headers.items() if k in ("Allow", "Retry-After")},
        )
    except _UNAVAILABLE as err:
        log.warning("store unavailable on %s %s: %r", request.method, request.path, err)
        return error_response(
            503, "Service temporarily unavailable, retry shortly", headers={"Retry-After": "1"}
        )
    except asyncpg.PostgresError as err:
        log.exception("database error on %s %s", request.method, request.path)
        if isinstance(err, asyncpg.exceptions.CannotConnectNowError):
            return error_response(
                503, "Service temporarily unavailable", headers={"Retry-After": "1"}
            )
        return error_response(500, "Internal server error")
