"""Live analytics ops: what one ingest request (51-54) asks the store to write.

Each op is a frozen record built from a decoded body (`StartOp.of`, ...) and
handed to the `AnalyticsWriter` (store.analytics_writer), which writes ops of
many requests in one transaction (store.analytics_batch). Every op is
idempotent under its key, so a retried batch or request never duplicates rows:

- session start: key `session_id`; the first start wins (a re-sent start changes nothing),
  except that a start fills in a session created implicitly before it;
- heartbeat: key (`session_id`, parsed client `timestamp`);
- event: key `event_id`, globally; an id already stored counts as accepted (a retry);
- session end: key `session_id`; the first end *by the player* wins and later ends get
  its summary back; a player's end replaces a sweeper's timeout close.

`rows` is what an op weighs against the writer's batch and capacity limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import msgspec

from protocol.analytics import AnalyticsHeartbeat, EndReason, SessionEnd, SessionStart
from protocol.analytics_events import EventsBatch, LiveEvent

__all__ = [
    "STATEMENT_TIMEOUT",
    "EndOp",
    "EndResult",
    "EventsOp",
    "HeartbeatOp",
    "Op",
    "StartOp",
]

# Every analytics statement (batch writes, sweeps, summaries) gives up after this long.
STATEMENT_TIMEOUT: Final = 10.0
_json: Final = msgspec.json.Encoder()


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class StartOp:
    session_id: str
    user_id: str | None
    device_id: str
    platform: str
    app_version: str | None
    stream_id: str
    channel_id: str
    creator_id: str
    program_id: str
    started_at: datetime
    started_text: str
    received_at: datetime
    payload: str

    rows = 1

    @classmethod
    def of(
        cls,
        body: SessionStart,
        *,
        user_id: str | None,
        at: datetime,
        received_at: datetime,
        raw: bytes,
    ) -> StartOp:
        return cls(
            session_id=body.session_id,
            user_id=user_id,
            device_id=body.device_id,
            platform=body.platform,
            app_version=body.app_version,
            stream_id=body.stream.stream_id,
            channel_id=body.stream.channel_id,
            creator_id=body.stream.creator_id,
            program_id=body.epg.current_program_id,
            started_at=at,
            started_text=body.timestamp,
            received_at=received_at,
            payload=_text(raw),
        )


@dataclass(frozen=True, slots=True)
class HeartbeatOp:
    session_id: str
    user_id: str | None
    device_id: str
    stream_id: str
    channel_id: str
    creator_id: str
    program_id: str | None
    at: datetime
    text: str
    received_at: datetime
    is_playing: bool
    is_paused: bool
    is_buffering: bool
    quality: str | None
    bitrate_kbps: int | None
    latency_ms: float | None
    rebuffer_count: int | None
    buffer_health_seconds: float | None
    body: str

    rows = 1

    @classmethod
    def of(
        cls,
        body: AnalyticsHeartbeat,
        *,
        user_id: str | None,
        at: datetime,
        received_at: datetime,
        raw: bytes,
    ) -> HeartbeatOp:
        perf, play = body.performance, body.playback
        return cls(
            session_id=body.session_id,
            user_id=user_id,
            device_id=body.device_id,
            stream_id=body.stream_id,
            channel_id=body.channel_id,
            creator_id=body.creator_id,
            program_id=body.epg.current_program_id if body.epg else None,
            at=at,
            text=body.timestamp,
            received_at=received_at,
            is_playing=play.is_playing,
            is_paused=play.is_paused,
            is_buffering=play.is_buffering,
            quality=play.quality,
            bitrate_kbps=perf.bitrate_kbps if perf else None,
            latency_ms=perf.latency_ms if perf else None,
            rebuffer_count=perf.rebuffer_count if perf else None,
            buffer_health_seconds=perf.buffer_health_seconds if perf else None,
            body=_text(raw),
        )


@dataclass(frozen=True, slots=True)
class EndOp:
    session_id: str
    user_id: str | None
    device_id: str | None
    stream_id: str | None
    channel_id: str | None
    creator_id: str | None
    ended_at: datetime
    text: str
    received_at: datetime
    end_reason: EndReason
    total_watch_seconds: int
    total_rebuffer_count: int
    quality_switches: int
    chat_messages: int
    reactions: int
    programs_watched: str
    payload: str

    rows = 1

    @classmethod
    def of(
        cls,
        body: SessionEnd,
        *,
        user_id: str | None,
        at: datetime,
        received_at: datetime,
        raw: bytes,
    ) -> EndOp:
        summary = body.watch_summary
        return cls(
            session_id=body.session_id,
            user_id=user_id,
            device_id=body.device_id,
            stream_id=body.stream_id,
            channel_id=body.channel_id,
            creator_id=body.creator_id,
            ended_at=at,
            text=body.timestamp,
            received_at=received_at,
            end_reason=summary.end_reason,
            total_watch_seconds=summary.total_watch_seconds,
            total_rebuffer_count=body.performance.total_rebuffer_count,
            quality_switches=body.performance.quality_switches,
            chat_messages=body.engagement.total_chat_messages_sent,
            reactions=body.engagement.total_reactions_sent,
            programs_watched=_json.encode(summary.programs_watched).decode(),
            payload=_text(raw),
        )


@dataclass(frozen=True, slots=True)
class EventsOp:
    session_id: str
    user_id: str | None
    device_id: str
    stream_id: str
    channel_id: str | None
    creator_id: str
    received_at: datetime
    events: tuple[LiveEvent, ...]

    @property
    def rows(self) -> int:
        return max(1, len(self.events))

    @classmethod
    def of(
        cls,
        body: EventsBatch,
        events: Sequence[LiveEvent],
        *,
        user_id: str | None,
        received_at: datetime,
    ) -> EventsOp:
        return cls(
            session_id=body.session_id,
            user_id=user_id,
            device_id=body.device_id,
            stream_id=body.stream_id,
            channel_id=body.channel_id,
            creator_id=body.creator_id,
            received_at=received_at,
            events=tuple(events),
        )


@dataclass(frozen=True, slots=True)
class EndResult:
    """The stored end of a session: what every end request for it is answered with."""

    total_watch_seconds: int
    end_reason: EndReason


Op = StartOp | HeartbeatOp | EndOp | EventsOp
