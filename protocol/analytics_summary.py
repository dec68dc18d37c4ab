"""The per-stream QoE summary of live analytics: raw totals in, ratios and display values out.

The store aggregates a stream into `StreamTotals` and `MinuteTotals`
(store.analytics_summary documents each definition); `stream_summary` turns
them into the `StreamSummary` response. Pure: `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from protocol.format import clock_duration, iso_utc

__all__ = [
    "Engagement",
    "MinuteStats",
    "MinuteTotals",
    "StreamSummary",
    "StreamTotals",
    "stream_summary",
]


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
    """Ratios and display values from the raw totals; see store.analytics_summary for their definitions.

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
