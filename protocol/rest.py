"""Bodies of the live channel REST API: endpoints 28–37 (seed Section 6).

Field names, nesting and order follow the seed's examples. Instants are
`datetime`s in UTC with whole seconds, which msgspec encodes as
"2024-11-01T18:15:00Z" (see protocol.format `utc_seconds`). Where the seed shows a key only
in some variants (the offline answer of 28, `season` of an on-demand item,
`price` of a PPV item), the Struct sets `omit_defaults=True` and that key
defaults to None; keys the seed shows as `null` are required, so they are
always present.

Elsewhere: the closed value sets and shared scalars in protocol.values, the
EPG objects (`EpgNow`, `WatchEpg`) and their builders in protocol.epg, the
admin API's bodies in protocol.admin. Shared with the websocket layer:
`ViewersDelta` (the `viewers` object of 36).

Names: endpoint 36's answer is `LiveHeartbeat` (the REST keep-alive of a watch
session), distinct from protocol.analytics' `AnalyticsHeartbeat` (endpoint 52,
a player's QoE report), so every schema title in /openapi.json is unique.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from protocol.epg import EpgNow, WatchEpg
from protocol.limits import Positive
from protocol.urls import QUALITY_LADDER
from protocol.values import (
    ContentFilter,
    ContentType,
    DeviceType,
    Id,
    LatencyMode,
    Quality,
    SessionOverReason,
    StreamHealth,
    TimezoneName,
)

# --- 28 GET /creators/{id}/channel/live ---------------------------------------------------


class UserState(msgspec.Struct, kw_only=True, frozen=True):
    is_following: bool
    is_subscribed: bool


class LiveStreamSummary(msgspec.Struct, kw_only=True, frozen=True):
    stream_id: str
    title: str
    started_at: datetime
    thumbnail_url: str
    stream_url: str
    dvr_url: str | None


class LiveChannelInfo(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """`watching_now*` only while live (the seed's offline variant has none); `stream` null offline."""

    channel_id: str
    channel_name: str
    channel_number: int
    is_live: bool
    watching_now: int | None = None
    watching_now_formatted: str | None = None
    stream: LiveStreamSummary | None


class ChannelLive(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """Live: creator_name and user_state. Offline: message instead, as in the seed."""

    creator_id: str
    creator_name: str | None = None
    is_live: bool
    channel: LiveChannelInfo
    user_state: UserState | None = None
    message: str | None = None


# --- 29 GET /creators/{id}/channel/live/stream --------------------------------------------


class StreamQuery(msgspec.Struct, kw_only=True, frozen=True):
    quality: Quality = Quality.AUTO
    dvr: bool = False


class PlaybackStream(msgspec.Struct, kw_only=True, frozen=True):
    """`dvr_url` is null unless `dvr=true` was asked and the stream keeps a DVR window."""

    stream_id: str
    is_live: bool
    quality: Quality
    stream_url: str
    dvr_url: str | None
    thumbnail_url: str
    token: str
    token_expires_at: datetime
    watching_now: int
    watching_now_formatted: str
    available_qualities: list[str]


# --- 30 GET /creators/{id}/channel/live/viewers -------------------------------------------


class DeviceCounts(msgspec.Struct, kw_only=True, frozen=True):
    web: int = 0
    ios: int = 0
    android: int = 0
    roku: int = 0
    firetv: int = 0
    appletv: int = 0


class ViewerBreakdown(msgspec.Struct, kw_only=True, frozen=True):
    watching_now: int
    watching_now_formatted: str
    peak_today: int
    peak_today_formatted: str
    peak_all_time: int
    peak_all_time_formatted: str
    by_device: DeviceCounts


class ChannelViewers(msgspec.Struct, kw_only=True, frozen=True):
    creator_id: str
    channel_id: str
    is_live: bool
    viewers: ViewerBreakdown
    last_updated_at: datetime


# --- 31 GET /creators/{id}/channel/live/metadata ------------------------------------------


class Cdn(msgspec.Struct, kw_only=True, frozen=True):
    provider: str
    region: str
    edge_location: str


class Drm(msgspec.Struct, kw_only=True, frozen=True):
    enabled: bool
    type: str | None
    license_url: str | None


class StreamUrls(msgspec.Struct, kw_only=True, frozen=True):
    hls: str
    dvr: str | None
    thumbnail: str


class StreamMetadata(msgspec.Struct, kw_only=True, frozen=True):
    stream_id: str
    is_live: bool
    stream_health: StreamHealth
    started_at: datetime
    uptime_seconds: int
    uptime_formatted: str
    latency_mode: LatencyMode
    bitrate_kbps: int
    resolution: str
    frame_rate: int
    cdn: Cdn
    drm: Drm
    stream_urls: StreamUrls


# --- 32 GET /creators/{id}/channel/live/qualities -----------------------------------------


class SessionQuery(msgspec.Struct, kw_only=True, frozen=True):
    """`session_id` of endpoints 32, 35 and 36."""

    session_id: Id


class QualityOption(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """ "Auto" carries a description; fixed rungs carry bitrate, resolution and frame rate."""

    label: str
    value: Quality
    description: str | None = None
    bitrate_kbps: int | None = None
    resolution: str | None = None
    frame_rate: int | None = None


class SessionQualities(msgspec.Struct, kw_only=True, frozen=True):
    session_id: str
    current_quality: Quality
    available_qualities: list[QualityOption]


# --- 33 POST /creators/{id}/channel/live/watch --------------------------------------------


class WatchRequest(msgspec.Struct, kw_only=True, frozen=True):
    channel_id: Id
    device_type: DeviceType
    quality: Quality = Quality.AUTO
    timezone: TimezoneName = "UTC"


class SessionInfo(msgspec.Struct, kw_only=True, frozen=True):
    session_id: str
    started_at: datetime
    expires_at: datetime
    heartbeat_interval_seconds: int
    device_type: DeviceType


class QualityBitrate(msgspec.Struct, kw_only=True, frozen=True):
    label: str
    bitrate_kbps: int


class WatchStream(msgspec.Struct, kw_only=True, frozen=True):
    stream_id: str
    stream_url: str
    dvr_url: str | None
    thumbnail_url: str
    quality: Quality
    available_qualities: list[QualityBitrate]
    token: str
    token_expires_at: datetime
    latency_mode: LatencyMode


class ChannelBrief(msgspec.Struct, kw_only=True, frozen=True):
    channel_id: str
    channel_name: str
    channel_number: int
    is_live: bool


class CreatorBrief(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    name: str
    is_verified: bool


class WatchViewers(msgspec.Struct, kw_only=True, frozen=True):
    watching_now: int
    watching_now_formatted: str
    peak_today: int
    peak_today_formatted: str


class WatchStarted(msgspec.Struct, kw_only=True, frozen=True):
    session: SessionInfo
    stream: WatchStream
    channel: ChannelBrief
    creator: CreatorBrief
    viewers: WatchViewers
    epg: WatchEpg


# --- 34 PATCH /creators/{id}/channel/live/watch -------------------------------------------


class QualityChange(msgspec.Struct, kw_only=True, frozen=True):
    """`device_type`, when sent, also moves the session to that device in `by_device`."""

    session_id: Id
    quality: Quality
    device_type: DeviceType | None = None


class QualityChanged(msgspec.Struct, kw_only=True, frozen=True):
    session_id: str
    quality: Quality
    stream_url: str
    token: str
    token_expires_at: datetime


# --- 35 DELETE /creators/{id}/channel/live/watch ------------------------------------------


class SessionEnded(msgspec.Struct, kw_only=True, frozen=True):
    session_id: str
    watch_duration_seconds: int
    watch_duration_formatted: str
    ended_at: datetime


# --- 36 GET /creators/{id}/channel/live/heartbeat -----------------------------------------


class LiveHeartbeatStream(msgspec.Struct, kw_only=True, frozen=True):
    stream_id: str
    is_live: bool
    health: StreamHealth
    token: str
    token_expires_at: datetime


class ViewersDelta(msgspec.Struct, kw_only=True, frozen=True):
    """Count now and the change since this session was last told (heartbeat or POST watch)."""

    watching_now: int
    watching_now_formatted: str
    delta: int


class LiveHeartbeat(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """`session_valid` false (with `reason`, and `stream` null) once the session ended or expired."""

    session_id: str
    session_valid: bool
    reason: SessionOverReason | None = None
    expires_at: datetime
    next_heartbeat_seconds: int
    stream: LiveHeartbeatStream | None
    viewers: ViewersDelta
    epg: EpgNow


# --- 37 GET /creators/{id}/channel/ondemand -----------------------------------------------


class OnDemandQuery(msgspec.Struct, kw_only=True, frozen=True):
    type: ContentFilter = ContentFilter.ALL
    season: Positive | None = None
    page: Positive = 1
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20


class ContentItem(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """`season`/`episode_number` only when set; `price`/`currency` only for PPV; `stream_url` null when locked."""

    content_id: str
    type: ContentType
    title: str
    thumbnail_url: str
    duration_seconds: int
    duration_formatted: str
    season: int | None = None
    episode_number: int | None = None
    is_free: bool
    is_locked: bool
    views: int
    views_formatted: str
    price: float | None = None
    currency: str | None = None
    stream_url: str | None


class OnDemandPage(msgspec.Struct, kw_only=True, frozen=True):
    creator_id: str
    total: int
    page: int
    limit: int
    content: list[ContentItem]


def quality_options() -> list[QualityOption]:
    """The options of endpoint 32: "Auto" first, then the ladder highest first."""
    return [
        QualityOption(label="Auto", value=Quality.AUTO, description="Adjusts automatically")
    ] + [
        QualityOption(
            label=r.quality,
            value=Quality(r.quality),
            bitrate_kbps=r.bitrate_kbps,
            resolution=r.resolution,
            frame_rate=r.frame_rate,
        )
        for r in QUALITY_LADDER
    ]


def quality_bitrates() -> list[QualityBitrate]:
    return [QualityBitrate(label=r.quality, bitrate_kbps=r.bitrate_kbps) for r in QUALITY_LADDER]
