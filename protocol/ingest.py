"""Ingest: a channel's secret stream key, and the bodies media servers send to our hooks.

Each hook type mirrors its media server's own request, field for field, so a
stock configuration talks to us unchanged (see the README's hook configs):

- nginx-rtmp-module `on_publish` / `on_publish_done`: form-encoded, `name` is
  the stream key (https://github.com/arut/nginx-rtmp-module/wiki/Directives);
- SRS `http_hooks` `on_publish` / `on_unpublish`: JSON, `stream` is the key;
- MediaMTX `authHTTPAddress` (JSON: user, password, token, ip, action, path,
  protocol, id, query) and `runOnReady` / `runOnNotReady` commands that post
  `{"path": ..., "query": ...}` from `$MTX_PATH` / `$MTX_QUERY`.

Unknown fields are ignored (media servers add fields between versions);
only the fields that name the stream are required.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec

# What a media server may send as one field: generous, but bounded (protocol.limits style).
Text = Annotated[str, msgspec.Meta(max_length=2048)]
StreamKeyText = Annotated[str, msgspec.Meta(max_length=256)]

KEY_PREFIX: Final = "sk_"


class IngestInfo(msgspec.Struct, kw_only=True, frozen=True):
    """A channel's ingest credentials: point the encoder at `publish_url` (or at
    `rtmp_url` with `stream_key` as the stream name / key field)."""

    channel_id: str
    stream_key: str
    rtmp_url: str
    publish_url: str
    rotated_at: datetime
    is_live: bool


class NginxRtmpHook(msgspec.Struct, kw_only=True, frozen=True):
    """nginx-rtmp-module on_publish / on_publish_done (form fields; all strings)."""

    name: StreamKeyText
    call: Text = ""
    app: Text = ""
    addr: Text = ""
    clientid: Text = ""
    flashver: Text = ""
    swfurl: Text = ""
    tcurl: Text = ""
    pageurl: Text = ""
    type: Text = ""


class SrsHook(msgspec.Struct, kw_only=True, frozen=True):
    """SRS http_hooks callback (JSON). `client_id` is a number before SRS 4, a string after."""

    action: Text
    stream: StreamKeyText = ""
    app: Text = ""
    vhost: Text = ""
    param: Text = ""
    ip: Text = ""
    client_id: Text | int = ""
    server_id: Text = ""
    service_id: Text = ""
    stream_id: Text = ""
    stream_url: Text = ""
    tcUrl: Text = ""


class SrsAnswer(msgspec.Struct, kw_only=True, frozen=True):
    """What SRS reads back: `code` 0 allows, anything else refuses."""

    code: int
    msg: str = ""


class MediaMtxAuth(msgspec.Struct, kw_only=True, frozen=True):
    """MediaMTX HTTP authentication request (authMethod: http)."""

    action: Text
    path: Text = ""
    query: Text = ""
    user: Text = ""
    password: Text = ""
    token: Text = ""
    ip: Text = ""
    protocol: Text = ""
    id: Text | None = None


class MediaMtxPath(msgspec.Struct, kw_only=True, frozen=True):
    """What a runOnReady / runOnNotReady command posts: `{"path": "$MTX_PATH", ...}`."""

    path: Text
    query: Text = ""
    source_type: Text = ""
    source_id: Text = ""


class HookAnswer(msgspec.Struct, kw_only=True, frozen=True):
    """Our answer to nginx-rtmp and MediaMTX hooks (they read only the status)."""

    allowed: bool
    channel_id: str | None = None
    is_live: bool | None = None
    stream_id: str | None = None
    reason: str = ""


def key_from_path(path: str, query: str = "") -> str:
    """The stream key in a MediaMTX path ("live/sk_…" → "sk_…") or its `key=` query parameter."""
    for part in query.lstrip("?").split("&"):
        name, _, value = part.partition("=")
        if name == "key" and value:
            return value
    return path.rstrip("/").rsplit("/", 1)[-1]


__all__ = [
    "KEY_PREFIX",
    "HookAnswer",
    "IngestInfo",
    "MediaMtxAuth",
    "MediaMtxPath",
    "NginxRtmpHook",
    "SrsAnswer",
    "SrsHook",
    "key_from_path",
]
