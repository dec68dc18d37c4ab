"""Errors of every layer in one vocabulary: the REST error envelope and websocket close codes.

protocol raises `ApiError` subclasses naming the offending field; the server's
middleware is the only place that turns them into a status and an envelope.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec


class ErrorEnvelope(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """`{"status": "error", "code": <http status>, "message": "..."}`; `field` names bad input."""

    status: str
    code: int
    message: str
    field: str | None = msgspec.field(default=None)


class ApiError(Exception):
    """An error the client caused or must handle; carries its HTTP status."""

    status: int = 400

    def __init__(
        self, message: str, *, field: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message: Final = message
        self.field: Final = field
        if status is not None:
            self.status = status

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(
            status="error", code=self.status, message=self.message, field=self.field
        )


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class Unprocessable(ApiError):
    status = 422


class TooManyRequests(ApiError):
    status = 429


class ServiceUnavailable(ApiError):
    """The server cannot store or answer right now; the client should retry after `retry_after`."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after: Final = retry_after


# The seed's messages, word for word.
NO_ACTIVE_STREAM: Final = "No active live stream found for this creator"
SUBSCRIPTION_REQUIRED: Final = "Subscription required to watch this channel"
MAX_CONCURRENT: Final = "Maximum concurrent streams reached. Please close another session."


class CloseCode(enum.IntEnum):
    """Websocket close codes and what a client should do on each."""

    NORMAL = 1000
    TOO_BIG = 1009  # a frame over the size limit: fix the client, do not retry the same frame
    DRAINING = 1012  # instance restarting: reconnect (any instance) at once and resume
    UNAUTHORIZED = 4001  # bad or expired bearer token: get a new token before reconnecting
    FORBIDDEN = 4003  # the session belongs to someone else: do not retry
    SESSION_NOT_FOUND = 4004  # unknown or not live: create a new session (POST watch)
    TOO_SLOW = 4008  # the client fell too far behind: reconnect and resume
    SESSION_ENDED = 4009  # ended elsewhere or expired: do not reconnect this session
    RATE_LIMITED = 4029  # kept sending past its message budget: reconnect after a back-off
