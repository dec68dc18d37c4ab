"""Bodies of the admin API (server/routes/admin.py documents the routes).

Creators, channels, EPG programs, on-demand content, streams (go live,
change, go offline), entitlements and stream keys. Patches use
msgspec.UNSET: a field left out is unchanged, an explicit null clears it
(`changes` lists what a patch sets).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from protocol.limits import BigNonNegative, NonNegative, Positive
from protocol.values import (
    AwareDatetime,
    ContentType,
    EntitlementKind,
    Id,
    LatencyMode,
    Name,
    StreamHealth,
    Url,
)

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
