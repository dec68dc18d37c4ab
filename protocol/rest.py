"""Bodies of the REST API: endpoints 28–37 (seed Section 6) and the admin API.

Field names, nesting and order follow the seed's examples. Instants are
`datetime`s in UTC with whole seconds, which msgspec encodes as
"2024-11-01T18:15:00Z" (see `utc_seconds`). Where the seed shows a key only
in some variants (the offline answer of 28, `season` of an on-demand item,
`price` of a PPV item), the Struct sets `omit_defaults=True` and that key
defaults to None; keys the seed shows as `null` are required, so they are
always present.

Shared with the websocket layer: `ViewersDelta` (the `viewers` object of 36),
`HeartbeatEpg` / `EpgCurrent` / `EpgNext` (the `epg` object of 36) and
`epg_now`, which builds the latter from a schedule and `now`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Final

import msgspec

from protocol import epg
from protocol.format import clock_time, local_date, require_aware
from protocol.limits import BigNonNegative, NonNegative, Positive
from protocol.urls import QUALITY_LADDER

# --- enums and constrained scalars -------------------------------------------------------


class Quality(enum.StrEnum):
    """Playback qualities a client may ask for; `auto` is the adaptive master playlist."""

    AUTO = "auto"
    P1080 = "1080p"
    P720 = "720p"
    P480 = "480p"
    P360 = "360p"


class DeviceType(enum.StrEnum):
    """Player families of the seed; every `by_device` breakdown lists all six."""

    WEB = "web"
    IOS = "ios"
    ANDROID = "android"
    ROKU = "roku"
    FIRETV = "firetv"
    APPLETV = "appletv"


class ContentType(enum.StrEnum):
    FREE = "free"
    PREMIUM = "premium"
    PPV = "ppv"


class ContentFilter(enum.StrEnum):
    """The `type` filter of endpoint 37: a content type, or `all`."""

    ALL = "all"
    FREE = "free"
    PREMIUM = "premium"
    PPV = "ppv"


class StreamHealth(enum.StrEnum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"


class LatencyMode(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"


class EntitlementKind(enum.StrEnum):
    """What an admin can grant: following a creator, a subscription, a PPV purchase."""

    FOLLOW = "follow"
    SUBSCRIPTION = "subscription"
    PPV = "ppv"


QUALITY_VALUES: Final = tuple(q.value for q in Quality)
DEVICE_TYPES: Final = tuple(d.value for d in DeviceType)

# Identifiers: short, URL-safe, never empty.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
TimezoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


def utc_seconds(at: datetime) -> datetime:
    """`at` in UTC without microseconds, so it encodes as the seed's "2024-11-01T18:15:00Z"."""
    return require_aware(at, "at").replace(microsecond=0)


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


class EpgCurrent(msgspec.Struct, kw_only=True, frozen=True):
    """The program on air, with minute arithmetic of protocol.epg (elapsed + remaining = length)."""

    program_id: str
    title: str
    elapsed_minutes: int
    remaining_minutes: int
    progress_percent: int


class EpgNext(msgspec.Struct, kw_only=True, frozen=True):
    program_id: str
    title: str
    starts_in_minutes: int
    start_time_formatted: str


class ScheduleEntry(msgspec.Struct, kw_only=True, frozen=True):
    """One program of the local day; times formatted in the watcher's zone."""

    program_id: str
    title: str
    description: str | None
    starts_at: datetime
    ends_at: datetime
    start_time_formatted: str
    end_time_formatted: str
    duration_minutes: int
    is_current: bool


class WatchEpg(msgspec.Struct, kw_only=True, frozen=True):
    """The local day (`date` in `timezone`): what is on, what is next, and the day's schedule."""

    date: str
    timezone: str
    current_program: EpgCurrent | None
    next_program: EpgNext | None
    schedule: list[ScheduleEntry]


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


class HeartbeatStream(msgspec.Struct, kw_only=True, frozen=True):
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


class HeartbeatEpg(msgspec.Struct, kw_only=True, frozen=True):
    current_program: EpgCurrent | None
    next_program: EpgNext | None


class Heartbeat(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """`session_valid` false (with `reason`, and `stream` null) once the session ended or expired."""

    session_id: str
    session_valid: bool
    reason: str | None = None
    expires_at: datetime
    next_heartbeat_seconds: int
    stream: HeartbeatStream | None
    viewers: ViewersDelta
    epg: HeartbeatEpg


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


# --- pure builders shared by REST and the websocket layer --------------------------------


def epg_current(p: epg.Program, now: datetime) -> EpgCurrent:
    return EpgCurrent(
        program_id=p.program_id,
        title=p.title,
        elapsed_minutes=epg.elapsed_minutes(p, now),
        remaining_minutes=epg.remaining_minutes(p, now),
        progress_percent=epg.progress_percent(p, now),
    )


def epg_next(p: epg.Program, now: datetime, tz: str) -> EpgNext:
    return EpgNext(
        program_id=p.program_id,
        title=p.title,
        starts_in_minutes=epg.starts_in_minutes(p, now),
        start_time_formatted=clock_time(p.starts_at, tz),
    )


def epg_now(programs: Sequence[epg.Program], now: datetime, tz: str) -> HeartbeatEpg:
    """What is on at `now` and what comes next, start time shown in zone `tz`.

    Either side is None in a gap or at the end of the schedule. Raises
    `UnknownTimezone` (422, field timezone) for a bad `tz`.
    """
    current = epg.current_program(programs, now)
    upcoming = epg.next_program(programs, now)
    return HeartbeatEpg(
        current_program=epg_current(current, now) if current else None,
        next_program=epg_next(upcoming, now, tz) if upcoming else None,
    )


def schedule_entry(p: epg.Program, now: datetime, tz: str) -> ScheduleEntry:
    at = require_aware(now, "now")
    return ScheduleEntry(
        program_id=p.program_id,
        title=p.title,
        description=p.description,
        starts_at=utc_seconds(p.starts_at),
        ends_at=utc_seconds(p.ends_at),
        start_time_formatted=clock_time(p.starts_at, tz),
        end_time_formatted=clock_time(p.ends_at, tz),
        duration_minutes=p.duration // epg.MINUTE,
        is_current=p.starts_at <= at < p.ends_at,
    )


def watch_epg(programs: Sequence[epg.Program], now: datetime, tz: str) -> WatchEpg:
    """The `epg` object of 33: the local day of `now` in `tz`, current and next program.

    Raises `UnknownTimezone` (422, field timezone) for a bad `tz`.
    """
    day = epg.day_schedule(programs, now, tz)
    head = epg_now(programs, now, tz)
    return WatchEpg(
        date=local_date(now, tz),
        timezone=tz,
        current_program=head.current_program,
        next_program=head.next_program,
        schedule=[schedule_entry(p, now, tz) for p in day],
    )


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


# --- admin API (server/routes/admin.py documents the routes) ------------------------------
# Patches use msgspec.UNSET: a field left out is unchanged, an explicit null clears it.

ChannelNumber = Annotated[int, msgspec.Meta(ge=1, le=99_999)]
Text = Annotated[str, msgspec.Meta(max_length=4000)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Price = Annotated[float, msgspec.Meta(ge=0, le=100_000)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class CreatorIn(msgspec.Struct, kw_only=True, frozen=True):
    creator_id: Id
    name: Name
    is_verified: bool = False


class CreatorPatch(msgspec.Struct, kw_only=True, frozen=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    is_verified: bool | msgspec.UnsetType = msgspec.UNSET


class CreatorOut(msgspec.Struct, kw_only=True, frozen=True):
    creator_id: str
    name: str
    is_verified: bool
    created_at: datetime


class ChannelIn(msgspec.Struct, kw_only=True, frozen=True):
    channel_id: Id
    channel_name: Name
    channel_number: ChannelNumber
    requires_subscription: bool = False


class ChannelPatch(msgspec.Struct, kw_only=True, frozen=True):
    channel_name: Name | msgspec.UnsetType = msgspec.UNSET
    channel_number: ChannelNumber | msgspec.UnsetType = msgspec.UNSET
    requires_subscription: bool | msgspec.UnsetType = msgspec.UNSET


class ChannelOut(msgspec.Struct, kw_only=True, frozen=True):
    channel_id: str
    creator_id: str
    channel_name: str
    channel_number: int
    requires_subscription: bool
    created_at: datetime


class ProgramIn(msgspec.Struct, kw_only=True, frozen=True):
    """A guide entry; `ends_at` must be after `starts_at` (422 field ends_at). Overlaps are allowed:
    the one that began last is "current" (protocol.epg)."""

    program_id: Id
    title: Name
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    description: Text | None = None
    thumbnail_url: Url | None = None


class ProgramPatch(msgspec.Struct, kw_only=True, frozen=True):
    title: Name | msgspec.UnsetType = msgspec.UNSET
    starts_at: AwareDatetime | msgspec.UnsetType = msgspec.UNSET
    ends_at: AwareDatetime | msgspec.UnsetType = msgspec.UNSET
    description: Text | None | msgspec.UnsetType = msgspec.UNSET
    thumbnail_url: Url | None | msgspec.UnsetType = msgspec.UNSET


class ProgramOut(msgspec.Struct, kw_only=True, frozen=True):
    program_id: str
    channel_id: str
    title: str
    starts_at: datetime
    ends_at: datetime
    description: str | None
    thumbnail_url: str | None


class ProgramDeleted(msgspec.Struct, kw_only=True, frozen=True):
    program_id: str
    channel_id: str
    deleted: bool


class ContentIn(msgspec.Struct, kw_only=True, frozen=True):
    """PPV items need `price` and `currency`; other types must not have them (422 field price)."""

    content_id: Id
    type: ContentType
    title: Name
    duration_seconds: NonNegative
    season: Positive | None = None
    episode_number: Positive | None = None
    views: BigNonNegative = 0
    price: Price | None = None
    currency: Currency | None = None
    thumbnail_url: Url | None = None
    published_at: AwareDatetime | None = None


class ContentPatch(msgspec.Struct, kw_only=True, frozen=True):
    type: ContentType | msgspec.UnsetType = msgspec.UNSET
    title: Name | msgspec.UnsetType = msgspec.UNSET
    duration_seconds: NonNegative | msgspec.UnsetType = msgspec.UNSET
    season: Positive | None | msgspec.UnsetType = msgspec.UNSET
    episode_number: Positive | None | msgspec.UnsetType = msgspec.UNSET
    views: BigNonNegative | msgspec.UnsetType = msgspec.UNSET
    price: Price | None | msgspec.UnsetType = msgspec.UNSET
    currency: Currency | None | msgspec.UnsetType = msgspec.UNSET
    thumbnail_url: Url | None | msgspec.UnsetType = msgspec.UNSET
    published_at: AwareDatetime | msgspec.UnsetType = msgspec.UNSET


class ContentOut(msgspec.Struct, kw_only=True, frozen=True):
    content_id: str
    creator_id: str
    type: ContentType
    title: str
    thumbnail_url: str | None
    duration_seconds: int
    season: int | None
    episode_number: int | None
    views: int
    price: float | None
    currency: str | None
    published_at: datetime


class ContentDeleted(msgspec.Struct, kw_only=True, frozen=True):
    content_id: str
    deleted: bool


class GoLive(msgspec.Struct, kw_only=True, frozen=True):
    """Start a broadcast; `stream_id` is generated when left out."""

    stream_id: Id | None = None
    title: Name
    health: StreamHealth = StreamHealth.GOOD
    latency_mode: LatencyMode = LatencyMode.LOW
    bitrate_kbps: Positive = 6000
    resolution: Label = "1080p"
    frame_rate: Positive = 30
    cdn_provider: Label = "cloudfront"
    cdn_region: Label = "us-east-1"
    cdn_edge_location: Label = "Atlanta, GA"
    dvr_enabled: bool = True
    drm_enabled: bool = False
    drm_type: Label | None = None
    drm_license_url: Url | None = None


class StreamPatch(msgspec.Struct, kw_only=True, frozen=True):
    """Change the live stream: typically `health`; also title and encoding facts."""

    title: Name | msgspec.UnsetType = msgspec.UNSET
    health: StreamHealth | msgspec.UnsetType = msgspec.UNSET
    latency_mode: LatencyMode | msgspec.UnsetType = msgspec.UNSET
    bitrate_kbps: Positive | msgspec.UnsetType = msgspec.UNSET
    resolution: Label | msgspec.UnsetType = msgspec.UNSET
    frame_rate: Positive | msgspec.UnsetType = msgspec.UNSET


class StreamOut(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A stream row; `ended_sessions` only when taking it offline ended watch sessions with it."""

    stream_id: str
    channel_id: str
    title: str
    is_live: bool
    started_at: datetime
    ended_at: datetime | None
    health: StreamHealth
    latency_mode: LatencyMode
    bitrate_kbps: int
    resolution: str
    frame_rate: int
    dvr_enabled: bool
    drm_enabled: bool
    ended_sessions: int | None = None


class EntitlementIn(msgspec.Struct, kw_only=True, frozen=True):
    """follow/subscription need `creator_id`; ppv needs `content_id` (422 naming the field).

    `expires_at` applies to subscriptions only (null = open-ended).
    """

    user_id: Id
    kind: EntitlementKind
    creator_id: Id | None = None
    content_id: Id | None = None
    expires_at: AwareDatetime | None = None


class EntitlementOut(msgspec.Struct, kw_only=True, frozen=True):
    user_id: str
    kind: EntitlementKind
    creator_id: str | None
    content_id: str | None
    expires_at: datetime | None


class StreamKeyRotated(msgspec.Struct, kw_only=True, frozen=True):
    """The channel's stream tokens are now signed with key `kid` (HMAC of the master key and kid)."""

    channel_id: str
    key_version: int
    kid: str


def changes(patch: msgspec.Struct) -> dict[str, object]:
    """The fields a patch sets (UNSET ones left out; an explicit null kept)."""
    return {f: v for f in patch.__struct_fields__ if (v := getattr(patch, f)) is not msgspec.UNSET}
