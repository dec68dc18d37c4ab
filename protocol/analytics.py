"""Live analytics ingest bodies: what players send (endpoints 51-53) and what they get back.

Required fields are those of the seed's tables (51, 53) and its "Include"
lists (52); everything else is optional with a default, and unknown fields
are ignored (the raw body is stored, so nothing a player sends is lost).
The events batch (54) and its per-event judgement live in
protocol.analytics_events; the per-stream QoE summary in protocol.analytics_summary.

Names: the 52 family is `AnalyticsHeartbeat*` (a player's QoE report, kept as
analytics rows), distinct from protocol.rest's `LiveHeartbeat` (endpoint 36,
the REST keep-alive of a watch session), so every Struct name, and every
schema title in /openapi.json, is unique.

Pure: no I/O and no clock; server timestamps are passed in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from protocol.errors import Unprocessable
from protocol.format import clock_duration, parse_iso_utc
from protocol.limits import INT32_MAX, FiniteNonNegative

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_WATCH_SECONDS",
    "AnalyticsHeartbeat",
    "AnalyticsHeartbeatAccepted",
    "EndReason",
    "IngestBody",
    "SessionEnd",
    "SessionEndAccepted",
    "SessionStart",
    "SessionStartAccepted",
    "WatchSummary",
    "client_time",
    "watch_summary",
]

MAX_ID_LENGTH: Final = 128
MAX_WATCH_SECONDS: Final = 31 * 24 * 3600  # a session longer than a month is a client bug

Platform = Literal["web", "ios", "android", "roku", "firetv", "appletv"]
LatencyMode = Literal["low", "normal"]
ConnectionType = Literal["wifi", "cellular", "ethernet"]
# The player's reason (53), and "timeout" when the sweeper closed a silent session.
EndReason = Literal["user_exit", "error", "timeout", "inactivity"]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Timestamp = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Count = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=MAX_WATCH_SECONDS)]
NonNegative = FiniteNonNegative
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]


def client_time(text: str, field: str) -> datetime:
    """A client's ISO 8601 timestamp as an aware UTC datetime; 422 naming `field` otherwise."""
    try:
        return parse_iso_utc(text)
    except ValueError:
        raise Unprocessable(
            f"Invalid {field}: expected ISO 8601 with a UTC offset, e.g. 2024-11-01T18:15:00Z",
            field=field,
        ) from None


class IngestBody(msgspec.Struct, kw_only=True, frozen=True):
    """What every ingest body (51-54) starts with: the player's session and the user it
    reports for (null for a guest; the server checks it against the bearer token)."""

    session_id: Id
    user_id: Id | None = None


# --- 51 session start -------------------------------------------------------------------------


class StreamRef(msgspec.Struct, kw_only=True, frozen=True):
    stream_id: Id
    channel_id: Id
    creator_id: Id
    creator_name: Text | None = None


class StartEpg(msgspec.Struct, kw_only=True, frozen=True):
    current_program_id: Id
    current_program_title: Text | None = None
    program_position_seconds: Seconds | None = None


class StartPlayback(msgspec.Struct, kw_only=True, frozen=True):
    quality: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    latency_mode: LatencyMode
    dvr_enabled: bool


class Device(msgspec.Struct, kw_only=True, frozen=True):
    connection_type: ConnectionType
    type: Text | None = None
    os: Text | None = None
    os_version: Text | None = None
    browser: Text | None = None
    browser_version: Text | None = None
    screen_resolution: Text | None = None


class Geo(msgspec.Struct, kw_only=True, frozen=True):
    country: Annotated[str, msgspec.Meta(min_length=2, max_length=3)]
    state: Text | None = None
    city: Text | None = None
    timezone: Text | None = None


class Referrer(msgspec.Struct, kw_only=True, frozen=True):
    source: Text | None = None
    page: Text | None = None
    section: Text | None = None


class SessionStart(IngestBody, kw_only=True, frozen=True):
    device_id: Id
    platform: Platform
    app_version: Text | None = None
    stream: StreamRef
    epg: StartEpg
    playback: StartPlayback
    device: Device
    geo: Geo
    referrer: Referrer | None = None
    timestamp: Timestamp


class SessionStartAccepted(msgspec.Struct, kw_only=True, frozen=True):
    session_id: str
    accepted: bool
    heartbeat_interval_seconds: int
    server_timestamp: str


# --- 52 heartbeat -----------------------------------------------------------------------------


class AnalyticsHeartbeatEpg(msgspec.Struct, kw_only=True, frozen=True):
    current_program_id: Id | None = None
    current_program_title: Text | None = None
    program_elapsed_seconds: Seconds | None = None
    program_progress_percent: Percent | None = None


class AnalyticsHeartbeatPlayback(msgspec.Struct, kw_only=True, frozen=True):
    is_playing: bool
    is_paused: bool = False
    is_buffering: bool
    quality: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    volume_level: NonNegative | None = None
    dvr_offset_seconds: Seconds | None = None


class AnalyticsHeartbeatPerformance(msgspec.Struct, kw_only=True, frozen=True):
    buffer_health_seconds: NonNegative | None = None
    rebuffer_count: Count | None = None
    bitrate_kbps: Count | None = None
    latency_ms: NonNegative | None = None


class AnalyticsHeartbeat(IngestBody, kw_only=True, frozen=True):
    device_id: Id
    stream_id: Id
    channel_id: Id
    creator_id: Id
    epg: AnalyticsHeartbeatEpg | None = None
    playback: AnalyticsHeartbeatPlayback
    performance: AnalyticsHeartbeatPerformance | None = None
    engagement: dict[str, Any] | None = None  # free-form in the seed; kept in the stored body
    timestamp: Timestamp


class AnalyticsHeartbeatAccepted(msgspec.Struct, kw_only=True, frozen=True):
    session_id: str
    accepted: bool
    next_heartbeat_seconds: int
    server_timestamp: str


# --- 53 session end ---------------------------------------------------------------------------


class EndWatchSummary(msgspec.Struct, kw_only=True, frozen=True):
    total_watch_seconds: Seconds
    end_reason: EndReason
    programs_watched: list[str | dict[str, Any]]


class EndPerformance(msgspec.Struct, kw_only=True, frozen=True):
    total_rebuffer_count: Count
    quality_switches: Count


class EndEngagement(msgspec.Struct, kw_only=True, frozen=True):
    total_chat_messages_sent: Count
    total_reactions_sent: Count


class SessionEnd(IngestBody, kw_only=True, frozen=True):
    # Optional: they let an end for a session the server never saw start still be attributed.
    device_id: Id | None = None
    stream_id: Id | None = None
    channel_id: Id | None = None
    creator_id: Id | None = None
    watch_summary: EndWatchSummary
    performance: EndPerformance
    engagement: EndEngagement
    timestamp: Timestamp


class WatchSummary(msgspec.Struct, kw_only=True, frozen=True):
    total_watch_seconds: int
    total_watch_formatted: str
    end_reason: EndReason


class SessionEndAccepted(msgspec.Struct, kw_only=True, frozen=True):
    session_id: str
    accepted: bool
    watch_summary: WatchSummary
    server_timestamp: str


def watch_summary(total_watch_seconds: int, end_reason: EndReason) -> WatchSummary:
    """The 53 response's summary: 2340 s → "39:00"."""
    return WatchSummary(
        total_watch_seconds=total_watch_seconds,
        total_watch_formatted=clock_duration(total_watch_seconds),
        end_reason=end_reason,
    )
