"""Endpoints 33–36: start, change, end and keep alive a watch session. All require a bearer.

Decisions (see store.sessions for liveness and the concurrency limit):

- 33 POST watch checks, in order: body (422 naming the field; unknown
  timezone → 422 field timezone), creator (404), `channel_id` is the
  creator's channel (422 field channel_id), a live stream (404 "No active
  live stream found for this creator"), entitlement (403 "Subscription
  required to watch this channel"), then the per-user limit (429 "Maximum
  concurrent streams reached. Please close another session."), atomically
  in PostgreSQL. `expires_at` is started_at + session_max_age. The EPG is
  the local calendar day of now in the requested zone (default UTC).
- 34 PATCH changes quality (and device, if sent) of a live session and
  returns a new stream URL and token; an ended session is 409.
- 35 DELETE is idempotent: ending an ended session answers 200 with the
  original `ended_at` and duration (player retries are harmless).
- 36 heartbeat touches the session and refreshes the token. A session that
  ended (DELETE, stream offline, swept) or passed its hard lifetime answers
  200 with `session_valid: false`, a `reason`, `stream: null` and no token:
  the player must POST watch again. `delta` is watching_now minus the count
  this session was told at its previous heartbeat (or at POST watch).
- Ownership for 34–36: someone else's session is 403, an unknown one 404.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from protocol import urls
from protocol.epg import local_day_bounds, watch_epg
from protocol.errors import (
    MAX_CONCURRENT,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unprocessable,
)
from protocol.format import clock_duration, compact_count, utc_seconds, zone
from protocol.rest import (
    ChannelBrief,
    CreatorBrief,
    LiveHeartbeat,
    LiveHeartbeatStream,
    QualityChange,
    QualityChanged,
    SessionEnded,
    SessionInfo,
    SessionQuery,
    ViewersDelta,
    WatchRequest,
    WatchStarted,
    WatchStream,
    WatchViewers,
    quality_bitrates,
)
from protocol.values import DeviceType, LatencyMode, Quality, StreamHealth
from server.respond import body_as, ok, query_as
from server.routes.live import (
    BASE,
    NOT_YOURS,
    SESSION_NOT_FOUND,
    caller_of,
    channel_of,
    counts_of,
    live_stream_of,
    notify,
    now_utc,
    owned_session,
    pool_of,
    require_entitled,
    require_live_session,
    settings_of,
    snapshot,
    stream_urls,
)
from server.state import BEATS, CACHE, EVENTS, PRESENCE, SIGNER
from store import channels, heartbeats, sessions


async def start_watch(request: web.Request) -> web.Response:
    """33: create a session and answer with stream, token, viewers and the day's EPG."""
    settings = settings_of(request)
    caller = caller_of(request)
    body = await body_as(request, WatchRequest)
    zone(body.timezone)
    snap = await snapshot(request)
    channel = channel_of(snap)
    if body.channel_id != channel.channel_id:
        raise Unprocessable(
            f"channel_id {body.channel_id!r} is not the channel of {snap.creator.creator_id}",
            field="channel_id",
        )
    stream = live_stream_of(snap)
    pool = pool_of(request)
    await require_entitled(pool, caller, channel)
    try:
        session, swept = await sessions.create_session(
            pool,
            user_id=caller.user_id,
            creator_id=snap.creator.creator_id,
            channel_id=channel.channel_id,
            stream_id=stream.stream_id,
            device_type=body.device_type,
            quality=body.quality,
            timezone=body.timezone,
            ttl=settings.session_ttl,
            max_age=settings.session_max_age,
            limit=settings.max_concurrent_sessions,
        )
    except sessions.ConcurrentLimitReached:
        raise TooManyRequests(MAX_CONCURRENT) from None
    # Counted as a REST poller from now; its socket, when it connects, takes over.
    await request.app[PRESENCE].poll(
        channel.channel_id,
        session.session_id,
        session.device_type,
        socket_instance=None,
        ttl=settings.session_ttl,
    )
    events = request.app[EVENTS]
    for old in swept:
        await request.app[PRESENCE].unpoll(old.channel_id, old.session_id)
        await notify(events.session_ended(old.channel_id, old.session_id, "timeout"))
        if old.channel_id != channel.channel_id:
            await notify(events.viewers_changed(old.channel_id))
    await notify(events.viewers_changed(channel.channel_id))

    counts = await counts_of(request, channel.channel_id)
    await sessions.report_viewers(pool, session.session_id, counts.watching_now)
    now = now_utc()
    day_start, day_end = local_day_bounds(now, body.timezone)
    programs = await channels.programs_between(
        pool, channel.channel_id, day_start, day_end + timedelta(days=1)
    )
    hls, dvr, thumb = stream_urls(settings.cdn_base_url, stream, body.quality)
    token = await request.app[SIGNER].mint_for(
        channel.channel_id,
        stream_id=stream.stream_id,
        session_id=session.session_id,
        user_id=caller.user_id,
        quality=body.quality,
    )
    return ok(
        WatchStarted(
            session=SessionInfo(
                session_id=session.session_id,
                started_at=utc_seconds(session.started_at),
                expires_at=utc_seconds(session.expires_at),
                heartbeat_interval_seconds=settings.heartbeat_interval,
                device_type=DeviceType(session.device_type),
            ),
            stream=WatchStream(
                stream_id=stream.stream_id,
                stream_url=hls,
                dvr_url=dvr,
                thumbnail_url=thumb,
                quality=Quality(session.quality),
                available_qualities=quality_bitrates(),
                token=token.token,
                token_expires_at=token.expires_at,
                latency_mode=LatencyMode(stream.latency_mode),
            ),
            channel=ChannelBrief(
                channel_id=channel.channel_id,
                channel_name=channel.channel_name,
                channel_number=channel.channel_number,
                is_live=True,
            ),
            creator=CreatorBrief(
                id=snap.creator.creator_id,
                name=snap.creator.name,
                is_verified=snap.creator.is_verified,
            ),
            viewers=WatchViewers(
                watching_now=counts.watching_now,
                watching_now_formatted=compact_count(counts.watching_now),
                peak_today=counts.peak_today,
                peak_today_formatted=compact_count(counts.peak_today),
            ),
            epg=watch_epg(programs, now, body.timezone),
        )
    )


async def change_quality(request: web.Request) -> web.Response:
    """34: switch quality (and device) of the caller's session; new URL and token."""
    settings = settings_of(request)
    caller = caller_of(request)
    body = await body_as(request, QualityChange)
    await snapshot(request)
    session = await owned_session(request, caller, body.session_id)
    require_live_session(session, now_utc())
    changed = await sessions.update_session(
        pool_of(request), session.session_id, quality=body.quality, device_type=body.device_type
    )
    if changed is None:  # ended between the read and the update
        raise Conflict("Watch session has ended", field="session_id")
    events = request.app[EVENTS]
    await notify(events.session_quality_changed(changed.channel_id, changed.session_id))
    if changed.device_type != session.device_type:
        await request.app[PRESENCE].poll(
            changed.channel_id,
            changed.session_id,
            changed.device_type,
            socket_instance=changed.socket_instance,
            ttl=settings.session_ttl,
        )
        await notify(events.viewers_changed(changed.channel_id))
    token = await request.app[SIGNER].mint_for(
        changed.channel_id,
        stream_id=changed.stream_id,
        session_id=changed.session_id,
        user_id=changed.user_id,
        quality=changed.quality,
    )
    return ok(
        QualityChanged(
            session_id=changed.session_id,
            quality=Quality(changed.quality),
            stream_url=urls.stream_url(settings.cdn_base_url, changed.stream_id, changed.quality),
            token=token.token,
            token_expires_at=token.expires_at,
        )
    )


async def end_watch(request: web.Request) -> web.Response:
    """35: end the caller's session; idempotent."""
    caller = caller_of(request)
    query = query_as(request, SessionQuery)
    await snapshot(request)
    session = await owned_session(request, caller, query.session_id)
    ended = await sessions.end_session(pool_of(request), session.session_id, "user_exit")
    assert ended is not None and ended.ended_at is not None
    if session.ended_at is None:
        await request.app[PRESENCE].unpoll(ended.channel_id, ended.session_id)
        events = request.app[EVENTS]
        await notify(events.session_ended(ended.channel_id, ended.session_id, "user_exit"))
        await notify(events.viewers_changed(ended.channel_id))
    seconds = max(0, int((ended.ended_at - ended.started_at).total_seconds()))
    return ok(
        SessionEnded(
            session_id=ended.session_id,
            watch_duration_seconds=seconds,
            watch_duration_formatted=clock_duration(seconds),
            ended_at=utc_seconds(ended.ended_at),
        ),
        message="Watch session ended",
    )


async def heartbeat(request: web.Request) -> web.Response:
    """36: keep the session alive; refreshed token, viewers with delta, EPG now/next.

    One row of one PostgreSQL statement per call (ownership, touch and the count
    swap; concurrent calls share a statement, store.heartbeats.HeartbeatBatcher).
    Creator, stream, counts and programs come from the instance's short-lived
    read cache (server.cache, at most viewer_interval old). A session is on its
    creator's channel (POST watch makes it so), so the path's creator gives the
    channel whose count the session is told.
    """
    settings = settings_of(request)
    caller = caller_of(request)
    query = query_as(request, SessionQuery)
    creator_id = request.match_info["creator_id"]
    cache = request.app[CACHE]
    snap = await cache.snapshot(creator_id)
    if snap is None:
        raise NotFound("Creator not found", field="creator_id")
    if snap.channel is None:  # no channel: no session can be on this creator
        raise NotFound(SESSION_NOT_FOUND, field="session_id")
    counts = await cache.counts(snap.channel.channel_id)
    pool = pool_of(request)
    beat = await request.app[BEATS].beat(
        heartbeats.BeatRequest(
            query.session_id,
            None if caller.is_admin else caller.user_id,
            creator_id,
            counts.watching_now,
        )
    )
    if beat is None or beat.session.creator_id != creator_id:
        raise NotFound(SESSION_NOT_FOUND, field="session_id")
    session = beat.session
    if session.user_id != caller.user_id and not caller.is_admin:
        raise Forbidden(NOT_YOURS, field="session_id")
    reason = None
    if beat.touched:
        # A sign of life: a poller counts for another session_ttl (one sorted-set update);
        # one that had gone quiet counts again, so the channel's count rose.
        if await request.app[PRESENCE].poll(
            session.channel_id,
            session.session_id,
            session.device_type,
            socket_instance=session.socket_instance,
            ttl=settings.session_ttl,
        ):
            await notify(request.app[EVENTS].viewers_changed(session.channel_id))
            counts = await cache.counts(session.channel_id)
    else:
        if session.ended_at is not None:
            reason = session.end_reason or "ended"
        else:  # past its hard lifetime: end it for good
            ended = await sessions.end_session(pool, session.session_id, "expired")
            reason = (ended.end_reason if ended else None) or "expired"
            events = request.app[EVENTS]
            await notify(events.session_ended(session.channel_id, session.session_id, reason))
            await request.app[PRESENCE].unpoll(session.channel_id, session.session_id)
            await notify(events.viewers_changed(session.channel_id))
            counts = await cache.counts(session.channel_id)
    epg = await cache.epg(session.channel_id, now_utc(), session.timezone)
    stream_info = None
    if reason is None:
        stream = snap.stream
        if stream is None or stream.stream_id != session.stream_id:
            stream = await channels.get_stream(pool, session.stream_id)
        assert stream is not None
        token = await request.app[SIGNER].mint_for(
            session.channel_id,
            stream_id=session.stream_id,
            session_id=session.session_id,
            user_id=session.user_id,
            quality=session.quality,
        )
        stream_info = LiveHeartbeatStream(
            stream_id=stream.stream_id,
            is_live=stream.is_live,
            health=StreamHealth(stream.health),
            token=token.token,
            token_expires_at=token.expires_at,
        )
    return ok(
        LiveHeartbeat(
            session_id=session.session_id,
            session_valid=reason is None,
            reason=reason,
            expires_at=utc_seconds(session.expires_at),
            next_heartbeat_seconds=settings.heartbeat_interval if reason is None else 0,
            stream=stream_info,
            viewers=ViewersDelta(
                watching_now=counts.watching_now,
                watching_now_formatted=compact_count(counts.watching_now),
                delta=counts.watching_now - beat.previous,
            ),
            epg=epg,
        )
    )


def setup(app: web.Application) -> None:
    """Register endpoints 33–36."""
    app.router.add_post(f"{BASE}/live/watch", start_watch)
    app.router.add_patch(f"{BASE}/live/watch", change_quality)
    app.router.add_delete(f"{BASE}/live/watch", end_watch)
    app.router.add_get(f"{BASE}/live/heartbeat", heartbeat)
