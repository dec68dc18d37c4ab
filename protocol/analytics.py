"""Live analytics wire types (endpoints 51-54) and the per-stream QoE summary.

Required fields are those of the seed's tables (51, 53) and its "Include"
lists (52, 54); everything else is optional with a default, and unknown
fields are ignored (the raw body is stored, so nothing a player sends is lost).

An events batch (54) is judged event by event: `events` is decoded as raw
values and `judge_events` sorts them into accepted events and
`RejectedEvent(event_id, reason)`. Only whole-request problems (bad JSON,
missing session_id, more than `MAX_EVENTS_PER_BATCH` events) fail the request.
Within one batch the *first* occurrence of an event_id is the one judged;
every later occurrence is rejected with `REJECT_DUPLICATE`.

Pure: no I/O and no clock; server timestamps are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from protocol.errors import Unprocessable
from protocol.format import clock_duration, iso_utc, parse_iso_utc
from protocol.limits import INT32_MAX, FiniteNonNegative

__all__ = [
    "EVENT_TYPES",
    "MAX_EVENTS_PER_BATCH",
    "MAX_METADATA_BYTES",
    "EventType",
    "EventsBatch",
    "EventsBatchAccepted",
    "Heartbeat",
    "HeartbeatAccepted",
    "IngestBody",
    "JudgedEvents",
    "LiveEvent",
    "MinuteStats",
    "MinuteTotals",
    "RejectedEvent",
    "SessionEnd",
    "SessionEndAccepted",
    "SessionStart",
    "SessionStartAccepted",
    "StreamSummary",
    "StreamTotals",
    "WatchSummary",
    "client_time",
    "judge_events",
    "stream_summary",
    "watch_summary",
]

MAX_EVENTS_PER_BATCH: Final = 500
MAX_METADATA_BYTES: Final = 4096  # encoded JSON of one event's metadata
MAX_ID_LENGTH: Final = 128
MAX_WATCH_SECONDS: Final = 31 * 24 * 3600  # a session longer than a month is a client bug

Platform = Literal["web", "ios", "android", "roku", "firetv", "appletv"]
LatencyMode = Literal["low", "normal"]
ConnectionType = Literal["wifi", "cellular", "ethernet"]
EndReason = Literal["user_exit", "error", "timeout", "inactivity"]
EventType = Literal[
    "stream_start",
    "stream_buffer_start",
    "stream_buffer_end",
    "stream_reconnect",
    "stream_reconnect_success",
    "stream_error",
    "program_change",
    "quality_change",
    "fullscreen_enter",
    "fullscreen_exit",
    "mute",
    "unmute",
    "dvr_seek",
    "dvr_resume_live",
    "reaction",
    "share",
    "follow",
    "subscribe",
    "tip",
]
EVENT_TYPES: Final[frozenset[str]] = frozenset(get_args(EventType))

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Timestamp = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Count = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=MAX_WATCH_SECONDS)]
NonNegative = FiniteNonNegative
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]

# Reasons in `rejected_events`: fixed strings, so players can switch on them.
REJECT_NOT_OBJECT: Final = "event must be an object"
REJECT_MISSING_ID: Final = "missing event_id"
REJECT_INVALID_ID: Final = "invalid event_id"
REJECT_DUPLICATE: Final = "duplicate event_id in batch"
REJECT_MISSING_TYPE: Final = "missing event_type"
REJECT_UNKNOWN_TYPE: Final = "unknown event_type"
REJECT_MISSING_TIMESTAMP: Final = "missing timestamp"
REJECT_INVALID_TIMESTAMP: Final = "invalid timestamp"
REJECT_METADATA: Final = "metadata must be an object"
REJECT_METADATA_SIZE: Final = "metadata too large"


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


class HeartbeatEpg(msgspec.Struct, kw_only=True, frozen=True):
    current_program_id: Id | None = None
    current_program_title: Text | None = None
    program_elapsed_seconds: Seconds | None = None
    program_progress_percent: Percent | None = None


class HeartbeatPlayback(msgspec.Struct, kw_only=True, frozen=True):
    is_playing: bool
    is_paused: bool = False
    is_buffering: bool
    quality: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    volume_level: NonNegative | None = None
    dvr_offset_seconds: Seconds | None = None


class HeartbeatPerformance(msgspec.Struct, kw_only=True, frozen=True):
    buffer_health_seconds: NonNegative | None = None
    rebuffer_count: Count | None = None
    bitrate_kbps: Count | None = None
    latency_ms: NonNegative | None = None


class Heartbeat(IngestBody, kw_only=True, frozen=True):
    device_id: Id
    stream_id: Id
    channel_id: Id
    creator_id: Id
    epg: HeartbeatEpg | None = None
    playback: HeartbeatPlayback
    performance: HeartbeatPerformance | None = None
    engagement: dict[str, Any] | None = None  # free-form in the seed; kept in the stored body
    timestamp: Timestamp


class HeartbeatAccepted(msgspec.Struct, kw_only=True, frozen=True):
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
    end_reason: str


class SessionEndAccepted(msgspec.Struct, kw_only=True, frozen=True):
    session_id: str
    accepted: bool
    watch_summary: WatchSummary
    server_timestamp: str


def watch_summary(total_watch_seconds: int, end_reason: str) -> WatchSummary:
    """The 53 response's summary: 2340 s → "39:00"."""
    return WatchSummary(
        total_watch_seconds=total_watch_seconds,
        total_watch_formatted=clock_duration(total_watch_seconds),
        end_reason=end_reason,
    )


# --- 54 events batch --------------------------------------------------------------------------


class EventsBatch(IngestBody, kw_only=True, frozen=True):
    device_id: Id
    stream_id: Id
    channel_id: Id | None = None
    creator_id: Id
    # Raw values: each event is judged on its own by `judge_events`.
    events: Annotated[list[msgspec.Raw], msgspec.Meta(max_length=MAX_EVENTS_PER_BATCH)]


class LiveEvent(msgspec.Struct, kw_only=True, frozen=True):
    """An event that passed judgement; `metadata_json` is the object re-encoded, or None."""

    event_id: str
    event_type: str
    timestamp: str
    at: datetime
    metadata_json: str | None


class RejectedEvent(msgspec.Struct, kw_only=True, frozen=True):
    event_id: str | None
    reason: str


class JudgedEvents(msgspec.Struct, kw_only=True, frozen=True):
    accepted: list[LiveEvent]
    rejected: list[RejectedEvent]


class EventsBatchAccepted(msgspec.Struct, kw_only=True, frozen=True):
    session_id: str
    accepted_count: int
    rejected_count: int
    rejected_events: list[RejectedEvent]
    server_timestamp: str


_metadata_encoder: Final = msgspec.json.Encoder()


def _judge(value: Any, event_id: str) -> LiveEvent | str:
    """The event, or the reason it is rejected; checks in a fixed order: type, timestamp, metadata."""
    event_type = value.get("event_type")
    if event_type is None:
        return REJECT_MISSING_TYPE
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        return REJECT_UNKNOWN_TYPE
    stamp = value.get("timestamp")
    if stamp is None:
        return REJECT_MISSING_TIMESTAMP
    if not isinstance(stamp, str) or len(stamp) > 64:
        return REJECT_INVALID_TIMESTAMP
    try:
        at = parse_iso_utc(stamp)
    except ValueError:
        return REJECT_INVALID_TIMESTAMP
    metadata = value.get("metadata")
    metadata_json = None
    if metadata is not None:
        if not isinstance(metadata, dict):
            return REJECT_METADATA
        encoded = _metadata_encoder.encode(metadata)
        if len(encoded) > MAX_METADATA_BYTES:
            return REJECT_METADATA_SIZE
        metadata_json = encoded.decode()
    return LiveEvent(
        event_id=event_id,
        event_type=event_type,
        timestamp=stamp,
        at=at,
        metadata_json=metadata_json,
    )


def judge_events(raws: Sequence[msgspec.Raw]) -> JudgedEvents:
    """Split a batch into accepted events and `RejectedEvent`s, keeping the batch order.

    `event_id` is checked first, so a rejection names the event whenever the
    event carries a usable id (null otherwise). The first occurrence of an id
    is judged; later ones are rejected as duplicates whatever their content.
    """
    accepted: list[LiveEvent] = []
    rejected: list[RejectedEvent] = []
    seen: set[str] = set()
    for raw in raws:
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            rejected.append(RejectedEvent(event_id=None, reason=REJECT_NOT_OBJECT))
            continue
        if not isinstance(value, dict):
            rejected.append(RejectedEvent(event_id=None, reason=REJECT_NOT_OBJECT))
            continue
        event_id = value.get("event_id")
        if event_id is None:
            rejected.append(RejectedEvent(event_id=None, reason=REJECT_MISSING_ID))
            continue
        if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_ID_LENGTH:
            rejected.append(RejectedEvent(event_id=None, reason=REJECT_INVALID_ID))
            continue
        if event_id in seen:
            rejected.append(RejectedEvent(event_id=event_id, reason=REJECT_DUPLICATE))
            continue
        seen.add(event_id)
        verdict = _judge(value, event_id)
        if isinstance(verdict, str):
            rejected.append(RejectedEvent(event_id=event_id, reason=verdict))
        else:
            accepted.append(verdict)
    return JudgedEvents(accepted=accepted, rejected=rejected)


# --- QoE summary ------------------------------------------------------------------------------


class StreamTotals(msgspec.Struct, kw_only=True, frozen=True):
    """What the store aggregates for one stream; `stream_summary` turns it into the response."""

    sessions: int
    active_sessions: int
    unique_viewers: int
    concurrent_peak: int
    concurrent_peak_at: datetime | None
    total_watch_seconds: float
    play_seconds: float
    stall_seconds: float
    rebuffer_count: int
    average_bitrate_kbps: float | None
    average_latency_ms: float | None
    error_count: int
    error_sessions: int
    quality_switches: int
    reactions: int
    tips: int
    follows: int
    subscribes: int


class MinuteTotals(msgspec.Struct, kw_only=True, frozen=True):
    minute: datetime
    concurrent_viewers: int
    average_bitrate_kbps: float | None
    rebuffer_events: int


class MinuteStats(msgspec.Struct, kw_only=True, frozen=True):
    minute: str
    concurrent_viewers: int
    average_bitrate_kbps: float | None
    rebuffer_events: int


class Engagement(msgspec.Struct, kw_only=True, frozen=True):
    reactions: int
    tips: int
    follows: int
    subscribes: int


class StreamSummary(msgspec.Struct, kw_only=True, frozen=True):
    stream_id: str
    creator_id: str | None
    sessions: int
    active_sessions: int
    unique_viewers: int
    concurrent_peak: int
    concurrent_peak_at: str | None
    total_watch_seconds: int
    total_watch_formatted: str
    average_watch_seconds: int
    average_watch_formatted: str
    play_seconds: int
    stall_seconds: int
    rebuffer_ratio: float | None
    rebuffer_count: int
    rebuffers_per_hour: float | None
    average_bitrate_kbps: float | None
    average_latency_ms: float | None
    error_count: int
    error_rate: float | None
    errors_per_hour: float | None
    quality_switches: int
    engagement: Engagement
    last_hour: list[MinuteStats]
    generated_at: str


def _per_hour(count: int, seconds: float) -> float | None:
    return round(count * 3600 / seconds, 2) if seconds > 0 else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def stream_summary(
    stream_id: str,
    creator_id: str | None,
    totals: StreamTotals,
    minutes: Sequence[MinuteTotals],
    now: datetime,
) -> StreamSummary:
    """Ratios and display values from the raw totals; see store.analytics for their definitions.

    Ratios are null, not zero, when their denominator is zero (no data is not a perfect score).
    """
    watch = round(totals.total_watch_seconds)
    average = watch // totals.sessions if totals.sessions else 0
    played = totals.play_seconds + totals.stall_seconds
    return StreamSummary(
        stream_id=stream_id,
        creator_id=creator_id,
        sessions=totals.sessions,
        active_sessions=totals.active_sessions,
        unique_viewers=totals.unique_viewers,
        concurrent_peak=totals.concurrent_peak,
        concurrent_peak_at=iso_utc(totals.concurrent_peak_at)
        if totals.concurrent_peak_at
        else None,
        total_watch_seconds=watch,
        total_watch_formatted=clock_duration(watch),
        average_watch_seconds=average,
        average_watch_formatted=clock_duration(average),
        play_seconds=round(totals.play_seconds),
        stall_seconds=round(totals.stall_seconds),
        rebuffer_ratio=round(totals.stall_seconds / played, 4) if played > 0 else None,
        rebuffer_count=totals.rebuffer_count,
        rebuffers_per_hour=_per_hour(totals.rebuffer_count, totals.total_watch_seconds),
        average_bitrate_kbps=_round(totals.average_bitrate_kbps, 1),
        average_latency_ms=_round(totals.average_latency_ms, 1),
        error_count=totals.error_count,
        error_rate=round(totals.error_sessions / totals.sessions, 4) if totals.sessions else None,
        errors_per_hour=_per_hour(totals.error_count, totals.total_watch_seconds),
        quality_switches=totals.quality_switches,
        engagement=Engagement(
            reactions=totals.reactions,
            tips=totals.tips,
            follows=totals.follows,
            subscribes=totals.subscribes,
        ),
        last_hour=[
            MinuteStats(
                minute=iso_utc(m.minute),
                concurrent_viewers=m.concurrent_viewers,
                average_bitrate_kbps=_round(m.average_bitrate_kbps, 1),
                rebuffer_events=m.rebuffer_events,
            )
            for m in minutes
        ],
        generated_at=iso_utc(now),
    )
