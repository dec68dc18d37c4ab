"""Success envelopes and request parsing shared by every handler."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web

from protocol.codec import convert, decode, encode
from protocol.errors import BadRequest

T = TypeVar("T")


def ok(data: Any, *, message: str | None = None, status: int = 200) -> web.Response:
    """`{"status": "success", ["message": ...,] "data": ...}`, encoded once by msgspec."""
    envelope: dict[str, Any] = {"status": "success"}
    if message is not None:
        envelope["message"] = message
    envelope["data"] = data
    return web.Response(body=encode(envelope), status=status, content_type="application/json")


async def body_as(request: web.Request, type_: type[T]) -> T:
    """Read and validate a JSON body; 400 when it is not JSON, 413 past the size limit, 422 naming the field."""
    if request.content_type not in (
        "application/json",
        "",
        "application/octet-stream",
        "text/plain",
    ):
        raise BadRequest("Content-Type must be application/json", field="Content-Type")
    raw = await request.read()
    if not raw:
        raise BadRequest("Request body is required", field="body")
    return decode(raw, type_)


def query_as(request: web.Request, type_: type[T]) -> T:
    """Validate query parameters into a Struct (strings coerced to int/bool), 422 naming the field."""
    return convert(dict(request.query), type_)
