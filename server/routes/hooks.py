"""Go-live from the encoder: the publish hooks of nginx-rtmp-module, SRS and MediaMTX.

Each route speaks its media server's own request shape (protocol.ingest) and
answers the way that server reads answers:

    POST /hooks/nginx-rtmp/publish       on_publish (form): 2xx allows, 403 refuses
    POST /hooks/nginx-rtmp/publish_done  on_publish_done (form): the result is ignored
    POST /hooks/srs                      http_hooks (JSON `action`): 200 `{"code": 0}` allows;
                                         a refusal is 403 with a non-zero `code`
    POST /hooks/mediamtx/auth            authHTTPAddress (JSON): 200 allows, 401 refuses
    POST /hooks/mediamtx/ready           runOnReady command: the path is being published
    POST /hooks/mediamtx/not-ready       runOnNotReady command: it stopped

The stream key (nginx `name`, SRS `stream`, the last segment of a MediaMTX
path, or a `key=` query parameter) is the only credential: the channel's
current key starts a stream through the admin API's own code path
(server.routes.golive), so watchers get `stream` and fresh tokens; unpublish
(current or previous key) ends it and its sessions (close 4009). A wrong key
is refused and changes nothing. Repeats are idempotent: publishing to a live
channel allows and starts nothing, unpublishing an offline one is a no-op.
Keys never appear in logs (only the channel id and the media server's client
address).
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from protocol.codec import convert, encode
from protocol.errors import ApiError, Unauthorized
from protocol.ingest import (
    KEY_PREFIX,
    HookAnswer,
    MediaMtxAuth,
    MediaMtxPath,
    NginxRtmpHook,
    SrsAnswer,
    SrsHook,
    key_from_path,
)
from server.respond import body_as, ok
from server.routes import golive
from server.state import POOL
from store import ingest

log = logging.getLogger(__name__)

__all__ = ["setup"]

UNKNOWN_KEY: Final = "Unknown or rotated stream key"
# SRS actions that only report: allowed and ignored, so one URL can take every SRS hook.
_SRS_PUBLISH: Final = "on_publish"
_SRS_UNPUBLISH: Final = "on_unpublish"
# MediaMTX auth actions a stream key does not govern: viewers are checked by the CDN's
# stream tokens, not here. api/metrics/pprof are refused (MediaMTX excludes them by default).
_MEDIAMTX_VIEW: Final = frozenset({"read", "playback"})


class Refused(ApiError):
    """The media server must not let this publish through."""


async def publish(app: web.Application, key: str, source: str) -> HookAnswer:
    """Take the key's channel live (idempotent); raises Refused for an unknown or old key."""
    match = await ingest.find_key(app[POOL], key)
    if match is None or not match.current:
        log.warning("publish refused from %s: unknown or rotated stream key", source)
        raise Refused(UNKNOWN_KEY, status=403, field="stream_key")
    stream, started = await golive.start_stream_once(app, match.channel_id)
    log.info(
        "%s %s from %s (stream %s)",
        match.channel_id,
        "went live" if started else "publish repeated",
        source,
        stream.stream_id,
    )
    return HookAnswer(
        allowed=True,
        channel_id=match.channel_id,
        is_live=True,
        stream_id=stream.stream_id,
        reason="started" if started else "already live",
    )


async def unpublish(app: web.Application, key: str, source: str) -> HookAnswer:
    """Take the key's channel offline (idempotent); raises Refused for an unknown key."""
    match = await ingest.find_key(app[POOL], key)
    if match is None:
        log.warning("unpublish refused from %s: unknown stream key", source)
        raise Refused(UNKNOWN_KEY, status=403, field="stream_key")
    ended = await golive.end_stream(app, match.channel_id)
    if ended is not None:
        log.info(
            "%s went offline from %s (%d sessions ended)", match.channel_id, source, len(ended[1])
        )
    return HookAnswer(
        allowed=True,
        channel_id=match.channel_id,
        is_live=False,
        stream_id=ended[0].stream_id if ended else None,
        reason="ended" if ended else "already offline",
    )


# --- nginx-rtmp-module ----------------------------------------------------------------------


async def _nginx_form(request: web.Request) -> NginxRtmpHook:
    form = await request.post()
    return convert({k: v for k, v in form.items() if isinstance(v, str)}, NginxRtmpHook)


async def nginx_publish(request: web.Request) -> web.Response:
    hook = await _nginx_form(request)
    return ok(await publish(request.app, hook.name, f"nginx-rtmp {hook.addr or request.remote}"))


async def nginx_publish_done(request: web.Request) -> web.Response:
    hook = await _nginx_form(request)
    return ok(await unpublish(request.app, hook.name, f"nginx-rtmp {hook.addr or request.remote}"))


# --- SRS ------------------------------------------------------------------------------------


def _srs(answer: SrsAnswer, status: int = 200) -> web.Response:
    return web.Response(body=encode(answer), status=status, content_type="application/json")


async def srs(request: web.Request) -> web.Response:
    hook = await body_as(request, SrsHook)
    if hook.action not in (_SRS_PUBLISH, _SRS_UNPUBLISH):
        return _srs(SrsAnswer(code=0, msg=f"{hook.action} ignored"))
    key = key_from_path(hook.stream, hook.param)
    source = f"srs {hook.ip or request.remote} client {hook.client_id}"
    try:
        if hook.action == _SRS_PUBLISH:
            answer = await publish(request.app, key, source)
        else:
            answer = await unpublish(request.app, key, source)
    except Refused as refused:
        return _srs(SrsAnswer(code=refused.status, msg=refused.message), status=refused.status)
    return _srs(SrsAnswer(code=0, msg=answer.reason))


# --- MediaMTX -------------------------------------------------------------------------------


def _mediamtx_key(path: str, query: str, password: str = "") -> str:
    key = key_from_path(path, query)
    if not key.startswith(KEY_PREFIX) and password.startswith(KEY_PREFIX):
        return password
    return key


async def mediamtx_auth(request: web.Request) -> web.Response:
    """Check a publish's key without taking the channel live: `ready` does that once media
    flows. Views are allowed; api/metrics/pprof are refused."""
    auth = await body_as(request, MediaMtxAuth)
    if auth.action in _MEDIAMTX_VIEW:
        return ok(HookAnswer(allowed=True, reason=f"{auth.action} is not gated here"))
    if auth.action != "publish":
        raise Unauthorized(f"action {auth.action!r} is not allowed", field="action")
    match = await ingest.find_key(
        request.app[POOL], _mediamtx_key(auth.path, auth.query, auth.password)
    )
    if match is None or not match.current:
        log.warning("mediamtx publish refused from %s: unknown or rotated key", auth.ip)
        raise Unauthorized(UNKNOWN_KEY, field="path")
    return ok(HookAnswer(allowed=True, channel_id=match.channel_id, reason="key accepted"))


async def mediamtx_ready(request: web.Request) -> web.Response:
    body = await body_as(request, MediaMtxPath)
    key = _mediamtx_key(body.path, body.query)
    return ok(await publish(request.app, key, f"mediamtx {body.source_type or request.remote}"))


async def mediamtx_not_ready(request: web.Request) -> web.Response:
    body = await body_as(request, MediaMtxPath)
    key = _mediamtx_key(body.path, body.query)
    return ok(await unpublish(request.app, key, f"mediamtx {body.source_type or request.remote}"))


def setup(app: web.Application) -> None:
    """Register the media-server hooks."""
    r = app.router
    r.add_post("/hooks/nginx-rtmp/publish", nginx_publish)
    r.add_post("/hooks/nginx-rtmp/publish_done", nginx_publish_done)
    r.add_post("/hooks/srs", srs)
    r.add_post("/hooks/mediamtx/auth", mediamtx_auth)
    r.add_post("/hooks/mediamtx/ready", mediamtx_ready)
    r.add_post("/hooks/mediamtx/not-ready", mediamtx_not_ready)
