"""The one place where errors become a status and the error envelope.

`STATUS_OF` is the table: client faults (`ApiError`) keep their own status
and message; store errors (store.errors) map by class; aiohttp's HTTP errors
(unknown route, wrong method, body too large) and body decoding failures get
the same envelope. Anything else is logged with its traceback under the
request id and answered 500 with that id: never aiohttp's text/plain page.

Every response carries `X-Request-Id` (the client's, when it sent a sane one).
Path parameters are checked here too: an id that cannot exist (NUL, spaces,
over 64 characters) is a 404 naming the parameter, before any handler runs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestPayloadError

from protocol.codec import encode
from protocol.errors import ApiError, ErrorEnvelope, ServiceUnavailable
from protocol.values import ID_PATTERN
from store.errors import (
    Conflict,
    LimitReached,
    NotFound,
    RejectedData,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID_HEADER: Final = "X-Request-Id"
REQUEST_ID: Final = web.RequestKey("request_id", str)
RETRY_AFTER: Final = 1
_SANE_ID: Final = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_PATH_ID: Final = re.compile(ID_PATTERN)

# Store error class -> HTTP status; the first matching class wins (subclasses first).
STATUS_OF: Final[tuple[tuple[type[StoreError], int], ...]] = (
    (StoreUnavailable, 503),
    (Conflict, 409),
    (NotFound, 404),
    (RejectedData, 422),
    (LimitReached, 429),
    (StoreError, 500),
)
_MESSAGES: Final = {503: "Service temporarily unavailable, retry shortly"}


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = encode(ErrorEnvelope(status="error", code=status, message=message, field=field))
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def request_id(request: web.Request) -> str:
    """The id logged with this request and echoed in `X-Request-Id`."""
    rid = request.get(REQUEST_ID)
    if rid is not None:
        return str(rid)
    sent = request.headers.get(REQUEST_ID_HEADER, "")
    rid = sent if _SANE_ID.match(sent) else uuid.uuid4().hex
    request[REQUEST_ID] = rid
    return rid


def _check_path(request: web.Request) -> None:
    for name, value in request.match_info.items():
        if name.endswith("_id") and not _PATH_ID.match(value):
            raise ApiError(f"Unknown {name}: {value[:64]!r}", field=name, status=404)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return " ".join(text.split()) if text else type(err).__name__


def _store_error(request: web.Request, err: StoreError) -> web.Response:
    status = next(code for cls, code in STATUS_OF if isinstance(err, cls))
    if status == 503:
        log.warning("store unavailable on %s %s: %s", request.method, request.path, err.message)
        return error_response(503, _MESSAGES[503], headers={"Retry-After": str(RETRY_AFTER)})
    if status == 500:
        return _internal(request, err)
    return error_response(status, err.message, err.field)


def _internal(request: web.Request, err: BaseException) -> web.Response:
    rid = request_id(request)
    log.error("request %s failed: %s %s", rid, request.method, request.path, exc_info=err)
    return error_response(500, f"Internal server error (request id {rid})")


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        _check_path(request)
        return await handler(request)
    except ServiceUnavailable as err:
        return error_response(
            err.status, err.message, headers={"Retry-After": str(err.retry_after)}
        )
    except ApiError as err:
        return error_response(err.status, err.message, err.field)
    except StoreError as err:
        return _store_error(request, err)
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
    except (HttpProcessingError, RequestPayloadError) as err:
        # A body that is not what its headers say (bad gzip/deflate, truncated chunks).
        return error_response(400, f"Request body cannot be decoded: {_first_line(err)}", "body")
    except (UnicodeDecodeError, LookupError) as err:
        # A text body in an unknown charset, or bytes that are not in the declared one.
        return error_response(400, f"Request body cannot be decoded: {err}", "Content-Type")
    except Exception as err:  # noqa: BLE001 - the last resort: logged with its traceback
        return _internal(request, err)


def error_middleware(request_timeout: float) -> Middleware:
    """Answer every failure with the envelope; tag every response with the request id.

    A plain request that has not answered within `request_timeout` seconds is
    cancelled and answered 503 + Retry-After (a frozen database must not hold
    clients for the length of the outage). Websocket upgrades are not timed:
    they live as long as the socket.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request_id(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            response = await _answer(request, handler)
        else:
            try:
                async with asyncio.timeout(request_timeout):
                    response = await _answer(request, handler)
            except TimeoutError:
                log.warning(
                    "request %s timed out after %.0f s: %s %s",
                    rid,
                    request_timeout,
                    request.method,
                    request.path,
                )
                response = error_response(
                    503,
                    "The request took too long, retry shortly",
                    headers={"Retry-After": str(RETRY_AFTER)},
                )
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = rid
        return response

    return middleware
