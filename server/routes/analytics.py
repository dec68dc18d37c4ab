"""Live analytics: ingest (51-54) and the per-stream QoE summary.

Ingest answers 200 only after the data is committed (group commit:
store.analytics_writer; idempotency keys: store.analytics_ops; lifecycle rules:
store.analytics_batch); when PostgreSQL cannot be reached it answers 503 with
Retry-After and acknowledges nothing.

Auth on ingest: the bearer token is optional, because guests (user_id null)
report too. A bad token is still a 401. Without a token the body's user_id
must be null (401 otherwise: a user's data needs that user's token). With a
token, user_id must equal its subject (403 otherwise) or be null, in which
case the subject is recorded; an admin token may report for any user_id (or
none: a guest's data stays a guest's).

The summary (`GET /analytics/live/streams/{stream_id}/summary`) needs a bearer
token of an admin or of the stream's creator (store.analytics_summary.stream_creator).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Final, TypeVar

from aiohttp import web

from protocol.analytics import (
    AnalyticsHeartbeat,
    AnalyticsHeartbeatAccepted,
    IngestBody,
    SessionEnd,
    SessionEndAccepted,
    SessionStart,
    SessionStartAccepted,
    client_time,
    watch_summary,
)
from protocol.analytics_events import EventsBatch, EventsBatchAccepted, judge_events
from protocol.analytics_summary import stream_summary
from protocol.errors import (
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from protocol.format import iso_utc
from server.auth import Caller, optional_caller, required_caller
from server.respond import body_as, ok
from server.state import POOL, SETTINGS
from store.analytics_ops import EndOp, EndResult, EventsOp, HeartbeatOp, Op, StartOp
from store.analytics_summary import (
    SessionOwner,
    session_owner,
    stream_creator,
    stream_minutes,
    stream_totals,
    sweep,
)
from store.analytics_writer import AnalyticsWriter
from store.errors import StoreUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.Response]]
_Body = TypeVar("_Body", bound=IngestBody)

WRITER: Final = web.AppKey("analytics_writer", AnalyticsWriter)
OWNERS: Final = web.AppKey("analytics_owners", OrderedDict[str, SessionOwner])
BUDGET: Final = web.AppKey("analytics_budget", list[int])  # [bytes held by ingest requests]
MAX_CACHED_OWNERS: Final = 100_000
RETRY_AFTER: Final = 2  # seconds a client waits before re-sending after a 503
ACQUIRE_TIMEOUT: Final = 5.0


def _now() -> datetime:
    return datetime.now(UTC)


def _reporting_user(caller: Caller | None, user_id: str | None) -> str | None:
    """The user_id to record, per the module's auth rules."""
    if caller is None:
        if user_id is not None:
            raise Unauthorized(
                "A bearer token is required to report analytics for a user_id",
                field="Authorization",
            )
        return None
    if user_id is None:
        return None if caller.is_admin else caller.user_id
    if user_id != caller.user_id and not caller.is_admin:
        raise Forbidden("user_id does not match the bearer token", field="user_id")
    return user_id


async def _ingest(request: web.Request, kind: type[_Body]) -> tuple[datetime, _Body, str | None]:
    """When the request arrived, its body, and the user_id to record for it.

    The bearer token is checked before the body is read: a bad token is a 401 whatever the body.
    A session already known belongs to whoever started it: others get 403 (admins excepted).
    """
    received = _now()
    caller = optional_caller(request, request.app[SETTINGS].jwt_secret)
    body = await body_as(request, kind)
    user_id = _reporting_user(caller, body.user_id)
    if caller is None or not caller.is_admin:
        await _check_owner(request, body.session_id, user_id, getattr(body, "device_id", None))
    return received, body, user_id


async def _check_owner(
    request: web.Request, session_id: str, user_id: str | None, device_id: str | None
) -> None:
    """403 unless the caller is the session's owner; owners never change, so they are cached."""
    owners = request.app[OWNERS]
    owner = owners.get(session_id)
    if owner is None:
        owner = await session_owner(request.app[POOL], session_id)
        if owner is None:
            return  # a new session: this request makes the caller its owner
        owners[session_id] = owner
        if len(owners) > MAX_CACHED_OWNERS:
            owners.popitem(last=False)
    else:
        owners.move_to_end(session_id)
    if not owner.admits(user_id, device_id):
        raise Forbidden(
            "This analytics session belongs to another user or device", field="session_id"
        )


async def _store(request: web.Request, op: Op) -> EndResult | None:
    """Hand `op` to the writer and wait for its commit; an outage is a 503 saying nothing was kept."""
    try:
        return await request.app[WRITER].submit(op)
    except StoreUnavailable as err:
        raise ServiceUnavailable(
            "Analytics storage is unavailable; nothing was acknowledged, please retry",
            retry_after=RETRY_AFTER,
        ) from err


def bounded(handler: Handler) -> Handler:
    """Hold the request's body size against `analytics_max_pending_bytes` while it runs.

    Ingest requests wait for their batch's commit, so their bodies stay in
    memory meanwhile. Past the cap a request is refused with 503 at once,
    before its body is read (a chunked body counts as `max_body`).
    """

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.Response:
        settings = request.app[SETTINGS]
        size = request.content_length
        size = settings.max_body if size is None else min(size, settings.max_body)
        held = request.app[BUDGET]
        if held[0] + size > settings.analytics_max_pending_bytes:
            raise ServiceUnavailable(
                "Analytics ingest is over capacity; nothing was stored, please retry",
                retry_after=RETRY_AFTER,
            )
        held[0] += size
        try:
            return await handler(request)
        finally:
            held[0] -= size

    return wrapper


@bounded
async def session_start(request: web.Request) -> web.Response:
    received, body, user_id = await _ingest(request, SessionStart)
    at = client_time(body.timestamp, "timestamp")
    await _store(
        request,
        StartOp.of(body, user_id=user_id, at=at, received_at=received, raw=await request.read()),
    )
    return ok(
        SessionStartAccepted(
            session_id=body.session_id,
            accepted=True,
            heartbeat_interval_seconds=request.app[SETTINGS].heartbeat_interval,
            server_timestamp=iso_utc(_now()),
        )
    )


@bounded
async def session_heartbeat(request: web.Request) -> web.Response:
    received, body, user_id = await _ingest(request, AnalyticsHeartbeat)
    at = client_time(body.timestamp, "timestamp")
    await _store(
        request,
        HeartbeatOp.of(
            body, user_id=user_id, at=at, received_at=received, raw=await request.read()
        ),
    )
    return ok(
        AnalyticsHeartbeatAccepted(
            session_id=body.session_id,
            accepted=True,
            next_heartbeat_seconds=request.app[SETTINGS].heartbeat_interval,
            server_timestamp=iso_utc(_now()),
        )
    )


@bounded
async def session_end(request: web.Request) -> web.Response:
    received, body, user_id = await _ingest(request, SessionEnd)
    at = client_time(body.timestamp, "timestamp")
    stored = await _store(
        request,
        EndOp.of(body, user_id=user_id, at=at, received_at=received, raw=await request.read()),
    )
    assert stored is not None
    return ok(
        SessionEndAccepted(
            session_id=body.session_id,
            accepted=True,
            watch_summary=watch_summary(stored.total_watch_seconds, stored.end_reason),
            server_timestamp=iso_utc(_now()),
        )
    )


@bounded
async def events_batch(request: web.Request) -> web.Response:
    received, body, user_id = await _ingest(request, EventsBatch)
    judged = judge_events(body.events)
    if judged.accepted:
        await _store(
            request, EventsOp.of(body, judged.accepted, user_id=user_id, received_at=received)
        )
    return ok(
        EventsBatchAccepted(
            session_id=body.session_id,
            accepted_count=len(judged.accepted),
            rejected_count=len(judged.rejected),
            rejected_events=judged.rejected,
            server_timestamp=iso_utc(_now()),
        )
    )


async def summary(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    caller = required_caller(request, settings.jwt_secret)
    stream_id = request.match_info["stream_id"]
    async with request.app[POOL].acquire(timeout=ACQUIRE_TIMEOUT) as conn:
        creator = await stream_creator(conn, stream_id)
        if not caller.is_admin:
            if creator is None:
                raise NotFound("No analytics for this stream", field="stream_id")
            if caller.user_id != creator:
                raise Forbidden("Only the stream's creator or an admin may read its analytics")
        now = _now()
        # One snapshot, so the numbers agree with each other.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            totals = await stream_totals(conn, stream_id, gap_cap=2.0 * settings.heartbeat_interval)
            minutes = await stream_minutes(conn, stream_id, now=now)
    if creator is None and totals.sessions == 0:
        raise NotFound("No analytics for this stream", field="stream_id")
    return ok(stream_summary(stream_id, creator, totals, minutes, now))


async def _sweep_forever(app: web.Application) -> None:
    """Close silent sessions every quarter timeout (0.5-30 s); database errors are logged and retried."""
    timeout = app[SETTINGS].analytics_session_timeout
    interval = min(max(timeout / 4, 0.5), 30.0)
    while True:
        await asyncio.sleep(interval)
        try:
            closed = await sweep(app[POOL], now=_now(), timeout=timeout)
        except Exception as err:
            log.warning("analytics sweep failed: %r", err, exc_info=err)
            continue
        if closed:
            log.info("analytics sweeper closed %d silent sessions", closed)


async def _analytics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The writer and the sweeper: started after the pool, stopped before it closes.

    On shutdown the sweeper is cancelled and the writer flushes what is pending.
    """
    writer = AnalyticsWriter(app[POOL])
    app[WRITER] = writer
    app[OWNERS] = OrderedDict()
    app[BUDGET] = [0]
    writer_task = asyncio.create_task(writer.run(), name="analytics-writer")
    sweeper = asyncio.create_task(_sweep_forever(app), name="analytics-sweeper")
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    await writer.close(writer_task)


def setup(app: web.Application) -> None:
    """Register this module's routes and resources on `app`."""
    app.router.add_post("/analytics/live/session/start", session_start)
    app.router.add_post("/analytics/live/session/heartbeat", session_heartbeat)
    app.router.add_post("/analytics/live/session/end", session_end)
    app.router.add_post("/analytics/live/events", events_batch)
    app.router.add_get("/analytics/live/streams/{stream_id}/summary", summary)
    app.cleanup_ctx.append(_analytics_ctx)
