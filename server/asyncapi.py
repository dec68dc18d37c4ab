"""`GET /asyncapi.json`: AsyncAPI 3.0 of websocket protocol v1, generated from protocol.messages.

The message list is the `ServerMessage` and `ClientMessage` tagged unions
themselves: each member Struct becomes a message named by its tag, its
payload schema comes from `msgspec.json.schema_components` (the same
generator as /openapi.json), so adding a message type to a union documents
it. The document describes the server: it `send`s server messages and
`receive`s client messages on one channel, the websocket path. Close codes
come from `protocol.errors.CloseCode`. Built once per process.
"""

from __future__ import annotations

import functools
from typing import Any, Final, get_args

import msgspec
from aiohttp import web

from protocol.errors import CloseCode
from protocol.messages import PROTOCOL, ClientMessage, ServerMessage

REF: Final = "#/components/schemas/{name}"
CHANNEL: Final = "live"
ADDRESS: Final = "/creators/{creator_id}/channel/live/ws"

# What each close code asks of a client (the README's close-code table, in short).
_CLOSE_RULES: Final = {
    CloseCode.NORMAL: "done; do not reconnect",
    CloseCode.TOO_BIG: "a client frame over 16 KiB; do not resend it",
    CloseCode.DRAINING: "instance draining; reconnect at once (any instance) and resume",
    CloseCode.UNAUTHORIZED: "missing, invalid or expired token; get a new one first",
    CloseCode.FORBIDDEN: "the session belongs to another user; do not retry",
    CloseCode.SESSION_NOT_FOUND: "unknown session or not live; POST watch again",
    CloseCode.TOO_SLOW: "send buffer over its limit; reconnect and resume",
    CloseCode.SESSION_ENDED: "session ended, expired or replaced; do not reconnect it",
    CloseCode.RATE_LIMITED: "past the message budget; reconnect after a back-off",
}


def _members(union: Any) -> list[type[msgspec.Struct]]:
    return list(get_args(union))


def _tag(cls: type[msgspec.Struct]) -> str:
    return str(cls.__struct_config__.tag)


def _key(direction: str, cls: type[msgspec.Struct]) -> str:
    """The message id: "serverHello", "clientResume" (component keys allow no dots in ids)."""
    return direction + _tag(cls).capitalize()


def _doc(cls: type[msgspec.Struct]) -> str:
    return " ".join((cls.__doc__ or "").split())


def build_document() -> dict[str, Any]:
    server_types = _members(ServerMessage)
    client_types = _members(ClientMessage)
    types = server_types + client_types
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    messages: dict[str, Any] = {}
    for cls, ref in zip(types, schemas, strict=True):
        direction = "server" if cls in server_types else "client"
        messages[_key(direction, cls)] = {
            "name": _tag(cls),
            "title": f"{_tag(cls)} ({direction} → {'client' if direction == 'server' else 'server'})",
            "summary": _doc(cls) or _tag(cls),
            "contentType": "application/json",
            "payload": ref,
        }

    def refs(kinds: list[type[msgspec.Struct]], direction: str) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{CHANNEL}/messages/{_key(direction, c)}"} for c in kinds]

    close_codes = "; ".join(f"{int(code)} {_CLOSE_RULES[code]}" for code in CloseCode)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "droptv-live websocket",
            "version": "1.0.0",
            "description": (
                f"One websocket per watcher, subprotocol `{PROTOCOL}`: JSON text frames, one "
                "object each, tagged by `type`. Every server message carries the channel's "
                "`epoch`, `seq` and `ts`; `viewers`, `epg` and `stream` each take the next seq. "
                f"Close codes: {close_codes}."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:8080",
                "protocol": "ws",
                "description": "`droptv-live serve` (use wss behind TLS)",
            }
        },
        "channels": {
            CHANNEL: {
                "address": ADDRESS,
                "title": "A watcher's live channel socket",
                "description": (
                    "Open after POST /creators/{creator_id}/channel/live/watch; the session must "
                    "be live and the caller's. Bearer in `Authorization` or `access_token`."
                ),
                "parameters": {"creator_id": {"description": "The creator whose channel to watch"}},
                "messages": {
                    **{k: {"$ref": f"#/components/messages/{k}"} for k in messages},
                },
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "required": ["session_id"],
                            "properties": {
                                "session_id": {"type": "string", "maxLength": 64},
                                "access_token": {
                                    "type": "string",
                                    "description": "Bearer JWT, for browsers",
                                },
                            },
                        },
                        "headers": {
                            "type": "object",
                            "properties": {
                                "Authorization": {"type": "string", "pattern": "^Bearer "},
                                "Sec-WebSocket-Protocol": {"const": PROTOCOL},
                            },
                        },
                    }
                },
            }
        },
        "operations": {
            "sendServerMessages": {
                "action": "send",
                "channel": {"$ref": f"#/channels/{CHANNEL}"},
                "summary": "What the server pushes to a watcher",
                "messages": refs(server_types, "server"),
            },
            "receiveClientMessages": {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{CHANNEL}"},
                "summary": "What a watcher may send",
                "messages": refs(client_types, "client"),
            },
        },
        "components": {"schemas": components, "messages": messages},
    }


@functools.cache
def document_bytes() -> bytes:
    return msgspec.json.encode(build_document())


async def asyncapi_json(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


def setup(app: web.Application) -> None:
    """Register GET /asyncapi.json."""
    app.router.add_get("/asyncapi.json", asyncapi_json)
