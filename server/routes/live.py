"""Endpoints 28–32: the live channel, its playback URL, viewers, metadata and qualities.

Also the helpers the other live-channel handlers share (creator lookup,
entitlement, session ownership, notifications). Decisions:

- 28 is public; a bearer token (optional) fills `user_state`. The offline
  variant has exactly the seed's keys (no `user_state`).
- 29 requires authentication: it mints a stream token bound to the caller,
  and checks entitlement like POST watch (403 on a subscription channel).
  The token is bound to no session (`sid` ""). `dvr_url` is null unless
  `dvr=true` and the stream keeps a DVR window.
- 29 and 31 answer 404 "No active live stream found for this creator" when
  the channel is offline; 30 answers with `is_live` false and the counts.
- 32 requires the session's owner (or an admin). Another user's session is
  403 (as the websocket's 4003); an unknown session, or one of another
  creator's channel, is 404; an ended one 409.
- Unknown creator: 404 "Creator not found"; a creator without a channel:
  404 "Channel not found".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from protocol import urls
from protocol.errors import NO_ACTIVE_STREAM, SUBSCRIPTION_REQUIRED, Conflict, Forbidden, NotFound
from protocol.format import compact_count, uptime, utc_seconds
from protocol.rest import (
    Cdn,
    ChannelLive,
    ChannelViewers,
    DeviceCounts,
    Drm,
    LiveChannelInfo,
    LiveStreamSummary,
    PlaybackStream,
    SessionQualities,
    SessionQuery,
    StreamMetadata,
    StreamQuery,
    StreamUrls,
    UserState,
    ViewerBreakdown,
    quality_options,
)
from protocol.values import LatencyMode, Quality, StreamHealth
from server.auth import Caller, optional_caller, required_caller
from server.config import Settings
from server.respond import ok, query_as
from server.state import CACHE, POOL, SETTINGS, SIGNER
from store import channels, sessions
from store.channels import Channel, ChannelSnapshot, Stream
from store.sessions import WatchSession
from store.viewers import ViewerCounts

log = logging.getLogger(__name__)

BASE = "/creators/{creator_id}/channel"
SESSION_NOT_FOUND = "Watch session not found"
NOT_YOURS = "This watch session belongs to another user"


# --- shared helpers -----------------------------------------------------------------------


def settings_of(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def pool_of(request: web.Request) -> asyncpg.Pool:
    return request.app[POOL]


async def snapshot(request: web.Request) -> ChannelSnapshot:
    """Creator, channel and live stream of the path's creator; 404 for an unknown creator."""
    snap = await channels.channel_snapshot(pool_of(request), request.match_info["creator_id"])
    if snap is None:
        raise NotFound("Creator not found", field="creator_id")
    return snap


def channel_of(snap: ChannelSnapshot) -> Channel:
    if snap.channel is None:
        raise NotFound("Channel not found", field="creator_id")
    return snap.channel


def live_stream_of(snap: ChannelSnapshot) -> Stream:
    channel_of(snap)
    if snap.stream is None:
        raise NotFound(NO_ACTIVE_STREAM)
    return snap.stream


async def require_entitled(pool: asyncpg.Pool, caller: Caller, channel: Channel) -> None:
    """403 with the seed's message unless the caller may watch `channel` (see store.channels)."""
    if caller.is_admin or caller.user_id == channel.creator_id or not channel.requires_subscription:
        return
    _, subscribed = await channels.user_state(pool, caller.user_id, channel.creator_id)
    if not subscribed:
        raise Forbidden(SUBSCRIPTION_REQUIRED)


async def owned_session(request: web.Request, caller: Caller, session_id: str) -> WatchSession:
    """The caller's session on the path's creator: 404 unknown, 403 someone else's."""
    session = await sessions.get_session(pool_of(request), session_id)
    if session is None or session.creator_id != request.match_info["creator_id"]:
        raise NotFound(SESSION_NOT_FOUND, field="session_id")
    if session.user_id != caller.user_id and not caller.is_admin:
        raise Forbidden(NOT_YOURS, field="session_id")
    return session


def require_live_session(session: WatchSession, now: datetime) -> None:
    if not session.is_live(now):
        raise Conflict("Watch session has ended", field="session_id")


async def notify(aw: Awaitable[None]) -> None:
    """Tell the real-time layer; the change is committed already, so a failure only logs."""
    try:
        await aw
    except Exception:
        log.exception("real-time notification failed")


def caller_of(request: web.Request) -> Caller:
    return required_caller(request, settings_of(request).jwt_secret)


def stream_urls(cdn: str, stream: Stream, quality: str = "auto") -> tuple[str, str | None, str]:
    """(stream_url, dvr_url or None without a DVR window, thumbnail_url)."""
    dvr = urls.dvr_url(cdn, stream.stream_id) if stream.dvr_enabled else None
    return (
        urls.stream_url(cdn, stream.stream_id, quality),
        dvr,
        urls.thumbnail_url(cdn, stream.stream_id),
    )


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- handlers -----------------------------------------------------------------------------


async def channel_live(request: web.Request) -> web.Response:
    """28: the channel, live or offline; public, a token fills user_state."""
    settings = settings_of(request)
    caller = optional_caller(request, settings.jwt_secret)
    snap = await snapshot(request)
    channel = channel_of(snap)
    if snap.stream is None:
        return ok(
            ChannelLive(
                creator_id=snap.creator.creator_id,
                is_live=False,
                channel=LiveChannelInfo(
                    channel_id=channel.channel_id,
                    channel_name=channel.channel_name,
                    channel_number=channel.channel_number,
                    is_live=False,
                    stream=None,
                ),
                message=f"{snap.creator.name} is currently offline",
            )
        )
    pool = pool_of(request)
    counts = await counts_of(request, channel.channel_id)
    following, subscribed = (
        await channels.user_state(pool, caller.user_id, snap.creator.creator_id)
        if caller
        else (False, False)
    )
    stream = snap.stream
    hls, dvr, thumb = stream_urls(settings.cdn_base_url, stream)
    return ok(
        ChannelLive(
            creator_id=snap.creator.creator_id,
            creator_name=snap.creator.name,
            is_live=True,
            channel=LiveChannelInfo(
                channel_id=channel.channel_id,
                channel_name=channel.channel_name,
                channel_number=channel.channel_number,
                is_live=True,
                watching_now=counts.watching_now,
                watching_now_formatted=compact_count(counts.watching_now),
                stream=LiveStreamSummary(
                    stream_id=stream.stream_id,
                    title=stream.title,
                    started_at=utc_seconds(stream.started_at),
                    thumbnail_url=thumb,
                    stream_url=hls,
                    dvr_url=dvr,
                ),
            ),
            user_state=UserState(is_following=following, is_subscribed=subscribed),
        )
    )


async def counts_of(request: web.Request, channel_id: str) -> ViewerCounts:
    """The channel's counts: presence (O(instances)) and peaks (two primary keys), through the
    instance's read cache: at most viewer_interval old, and read afresh after any join, leave
    or device move handled here (server.cache), so a burst of public GETs costs one read."""
    return await request.app[CACHE].counts(channel_id)


async def live_stream(request: web.Request) -> web.Response:
    """29: a playback URL and a stream token for the caller."""
    settings = settings_of(request)
    caller = caller_of(request)
    query = query_as(request, StreamQuery)
    snap = await snapshot(request)
    stream = live_stream_of(snap)
    channel = channel_of(snap)
    pool = pool_of(request)
    await require_entitled(pool, caller, channel)
    counts = await counts_of(request, channel.channel_id)
    hls, dvr, thumb = stream_urls(settings.cdn_base_url, stream, query.quality)
    token = await request.app[SIGNER].mint_for(
        channel.channel_id,
        stream_id=stream.stream_id,
        session_id="",
        user_id=caller.user_id,
        quality=query.quality,
    )
    return ok(
        PlaybackStream(
            stream_id=stream.stream_id,
            is_live=True,
            quality=query.quality,
            stream_url=hls,
            dvr_url=dvr if query.dvr else None,
            thumbnail_url=thumb,
            token=token.token,
            token_expires_at=token.expires_at,
            watching_now=counts.watching_now,
            watching_now_formatted=compact_count(counts.watching_now),
            available_qualities=[r.quality for r in urls.QUALITY_LADDER],
        )
    )


async def live_viewers(request: web.Request) -> web.Response:
    """30: exact counts by device and durable peaks; public."""
    snap = await snapshot(request)
    channel = channel_of(snap)
    counts = await counts_of(request, channel.channel_id)
    known = {k: v for k, v in counts.by_device.items() if k in DeviceCounts.__struct_fields__}
    return ok(
        ChannelViewers(
            creator_id=snap.creator.creator_id,
            channel_id=channel.channel_id,
            is_live=snap.stream is not None,
            viewers=ViewerBreakdown(
                watching_now=counts.watching_now,
                watching_now_formatted=compact_count(counts.watching_now),
                peak_today=counts.peak_today,
                peak_today_formatted=compact_count(counts.peak_today),
                peak_all_time=counts.peak_all_time,
                peak_all_time_formatted=compact_count(counts.peak_all_time),
                by_device=DeviceCounts(**known),
            ),
            last_updated_at=utc_seconds(counts.measured_at or snap.now),
        )
    )


async def live_metadata(request: web.Request) -> web.Response:
    """31: health, encoding, CDN and DRM of the live stream; public."""
    settings = settings_of(request)
    snap = await snapshot(request)
    stream = live_stream_of(snap)
    hls, dvr, thumb = stream_urls(settings.cdn_base_url, stream)
    up = max(0, int((snap.now - stream.started_at).total_seconds()))
    return ok(
        StreamMetadata(
            stream_id=stream.stream_id,
            is_live=True,
            stream_health=StreamHealth(stream.health),
            started_at=utc_seconds(stream.started_at),
            uptime_seconds=up,
            uptime_formatted=uptime(up),
            latency_mode=LatencyMode(stream.latency_mode),
            bitrate_kbps=stream.bitrate_kbps,
            resolution=stream.resolution,
            frame_rate=stream.frame_rate,
            cdn=Cdn(
                provider=stream.cdn_provider,
                region=stream.cdn_region,
                edge_location=stream.cdn_edge_location,
            ),
            drm=Drm(
                enabled=stream.drm_enabled, type=stream.drm_type, license_url=stream.drm_license_url
            ),
            stream_urls=StreamUrls(hls=hls, dvr=dvr, thumbnail=thumb),
        )
    )


async def live_qualities(request: web.Request) -> web.Response:
    """32: the quality options of the caller's session."""
    caller = caller_of(request)
    query = query_as(request, SessionQuery)
    await snapshot(request)
    session = await owned_session(request, caller, query.session_id)
    require_live_session(session, now_utc())
    return ok(
        SessionQualities(
            session_id=session.session_id,
            current_quality=Quality(session.quality),
            available_qualities=quality_options(),
        )
    )


def setup(app: web.Application) -> None:
    """Register endpoints 28–32."""
    app.router.add_get(f"{BASE}/live", channel_live)
    app.router.add_get(f"{BASE}/live/stream", live_stream)
    app.router.add_get(f"{BASE}/live/viewers", live_viewers)
    app.router.add_get(f"{BASE}/live/metadata", live_metadata)
    app.router.add_get(f"{BASE}/live/qualities", live_qualities)
