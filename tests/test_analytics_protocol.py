"""protocol.analytics*: required fields, enums, per-event judgement, summary arithmetic (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from protocol.analytics import (
    AnalyticsHeartbeat,
    SessionEnd,
    SessionStart,
    client_time,
    watch_summary,
)
from protocol.analytics_events import EVENT_TYPES, MAX_METADATA_BYTES, EventsBatch, judge_events
from protocol.analytics_summary import StreamTotals, stream_summary
from protocol.codec import decode
from protocol.errors import Unprocessable

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"analytics_{name}.json").read_text())
    return data


def raws(*events: Any) -> list[msgspec.Raw]:
    return [msgspec.Raw(json.dumps(e).encode()) for e in events]


def test_seed_bodies_decode() -> None:
    start = decode(json.dumps(load("session_start")), SessionStart)
    assert (start.platform, start.stream.creator_id, start.playback.latency_mode) == (
        "web",
        "creator_001",
        "low",
    )
    assert start.device.connection_type == "wifi" and start.geo.country == "US"
    beat = decode(json.dumps(load("session_heartbeat")), AnalyticsHeartbeat)
    assert beat.performance is not None and beat.performance.bitrate_kbps == 5800
    end = decode(json.dumps(load("session_end")), SessionEnd)
    assert end.watch_summary.total_watch_seconds == 2340
    batch = decode(json.dumps(load("events")), EventsBatch)
    assert len(judge_events(batch.events).accepted) == 5


def test_the_nineteen_event_types() -> None:
    assert len(EVENT_TYPES) == 19
    assert {
        "stream_buffer_start",
        "stream_reconnect_success",
        "dvr_resume_live",
        "tip",
    } <= EVENT_TYPES


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("platform", "playstation"),
        ("playback.latency_mode", "ultra"),
        ("device.connection_type", "dialup"),
    ],
)
def test_start_enums(path: str, value: str) -> None:
    body = load("session_start")
    *parents, leaf = path.split(".")
    node = body
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(Unprocessable) as err:
        decode(json.dumps(body), SessionStart)
    assert err.value.field == path


def test_end_reason_enum() -> None:
    body = load("session_end")
    body["watch_summary"]["end_reason"] = "bored"
    with pytest.raises(Unprocessable) as err:
        decode(json.dumps(body), SessionEnd)
    assert err.value.field == "watch_summary.end_reason"


def test_client_time() -> None:
    assert client_time("2024-11-01T18:15:00Z", "timestamp") == datetime(
        2024, 11, 1, 18, 15, tzinfo=UTC
    )
    assert client_time("2024-11-01T14:15:00-04:00", "timestamp") == datetime(
        2024, 11, 1, 18, 15, tzinfo=UTC
    )
    for bad in ("2024-11-01T18:15:00", "yesterday", ""):
        with pytest.raises(Unprocessable) as err:
            client_time(bad, "timestamp")
        assert err.value.field == "timestamp"


def test_judge_events_one_by_one() -> None:
    good = {"event_id": "a", "event_type": "mute", "timestamp": "2024-11-01T18:15:00Z"}
    judged = judge_events(
        raws(
            good,
            {"event_id": "b", "event_type": "teleport", "timestamp": "2024-11-01T18:15:00Z"},
            {"event_type": "mute", "timestamp": "2024-11-01T18:15:00Z"},
            {"event_id": "d", "event_type": "mute"},
            {"event_id": "e", "event_type": "mute", "timestamp": "later"},
            {
                "event_id": "f",
                "event_type": "mute",
                "timestamp": "2024-11-01T18:15:00Z",
                "metadata": [1],
            },
            {**good, "event_type": "unmute"},
            "not an event",
            {"event_id": 42, "event_type": "mute", "timestamp": "2024-11-01T18:15:00Z"},
            {
                "event_id": "g",
                "event_type": "tip",
                "timestamp": "2024-11-01T19:00:00+01:00",
                "metadata": {"amount": 5},
            },
            {"event_id": "h", "timestamp": "2024-11-01T18:15:00Z"},
            {"event_id": "i", "event_type": "mute", "timestamp": "2024-11-01T18:15:00"},
            {
                "event_id": "j",
                "event_type": "mute",
                "timestamp": "2024-11-01T18:15:00Z",
                "metadata": {"blob": "x" * MAX_METADATA_BYTES},
            },
            {
                "event_id": "k",
                "event_type": "mute",
                "timestamp": "2024-11-01T18:15:00Z",
                "metadata": None,
            },
        )
    )
    assert [(e.event_id, e.event_type) for e in judged.accepted] == [
        ("a", "mute"),
        ("g", "tip"),
        ("k", "mute"),
    ]
    assert judged.accepted[1].at == datetime(2024, 11, 1, 18, 0, tzinfo=UTC)
    assert judged.accepted[1].timestamp == "2024-11-01T19:00:00+01:00"  # kept as sent
    assert judged.accepted[1].metadata_json == '{"amount":5}'
    assert judged.accepted[2].metadata_json is None
    assert [(r.event_id, r.reason) for r in judged.rejected] == [
        ("b", "unknown event_type"),
        (None, "missing event_id"),
        ("d", "missing timestamp"),
        ("e", "invalid timestamp"),
        ("f", "metadata must be an object"),
        ("a", "duplicate event_id in batch"),
        (None, "event must be an object"),
        (None, "invalid event_id"),
        ("h", "missing event_type"),
        ("i", "invalid timestamp"),
        ("j", "metadata too large"),
    ]


def test_first_occurrence_is_judged_even_when_bad() -> None:
    judged = judge_events(
        raws(
            {"event_id": "x", "event_type": "nope", "timestamp": "2024-11-01T18:15:00Z"},
            {"event_id": "x", "event_type": "mute", "timestamp": "2024-11-01T18:15:00Z"},
        )
    )
    assert judged.accepted == []
    assert [r.reason for r in judged.rejected] == [
        "unknown event_type",
        "duplicate event_id in batch",
    ]


def test_watch_summary_formats() -> None:
    assert watch_summary(2340, "user_exit").total_watch_formatted == "39:00"
    assert watch_summary(4500, "timeout").total_watch_formatted == "1:15:00"


def totals(**over: Any) -> StreamTotals:
    base: dict[str, Any] = {
        "sessions": 4,
        "active_sessions": 1,
        "unique_viewers": 3,
        "concurrent_peak": 3,
        "concurrent_peak_at": datetime(2024, 11, 1, 18, 0, 40, tzinfo=UTC),
        "total_watch_seconds": 410.0,
        "play_seconds": 180.0,
        "stall_seconds": 30.0,
        "rebuffer_count": 3,
        "average_bitrate_kbps": 4166.666,
        "average_latency_ms": 2166.666,
        "error_count": 1,
        "error_sessions": 1,
        "quality_switches": 3,
        "reactions": 2,
        "tips": 1,
        "follows": 1,
        "subscribes": 1,
    }
    base.update(over)
    return StreamTotals(**base)


def test_summary_ratios() -> None:
    now = datetime(2024, 11, 1, 19, 0, 30, tzinfo=UTC)
    s = stream_summary("st", "cr", totals(), [], now)
    assert s.rebuffer_ratio == round(30 / 210, 4)
    assert s.rebuffers_per_hour == round(3 * 3600 / 410, 2)
    assert s.errors_per_hour == round(3600 / 410, 2)
    assert (s.error_rate, s.average_watch_seconds, s.total_watch_formatted) == (0.25, 102, "6:50")
    assert (s.average_bitrate_kbps, s.average_latency_ms) == (4166.7, 2166.7)
    assert (s.concurrent_peak_at, s.generated_at) == (
        "2024-11-01T18:00:40Z",
        "2024-11-01T19:00:30Z",
    )


def test_summary_without_data_has_null_ratios() -> None:
    s = stream_summary(
        "st",
        None,
        totals(
            sessions=0,
            active_sessions=0,
            unique_viewers=0,
            concurrent_peak=0,
            concurrent_peak_at=None,
            total_watch_seconds=0.0,
            play_seconds=0.0,
            stall_seconds=0.0,
            rebuffer_count=0,
            average_bitrate_kbps=None,
            average_latency_ms=None,
            error_count=0,
            error_sessions=0,
        ),
        [],
        datetime(2024, 11, 1, tzinfo=UTC),
    )
    assert (s.rebuffer_ratio, s.rebuffers_per_hour, s.error_rate, s.errors_per_hour) == (
        None,
        None,
        None,
        None,
    )
    assert (s.average_watch_seconds, s.concurrent_peak_at) == (0, None)
