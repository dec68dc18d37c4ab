"""GET /analytics/live/streams/{stream_id}/summary: numbers from a known synthetic session set,
ingested through the real endpoints, against hand-computed values; and who may read it.

The sessions (seconds after M, a whole minute 30 minutes ago; intervals [start, until)):

    A  user_a     start 0    heartbeats 30 play 6000kbps/2000ms, 60 BUFFERING 3000/3000 (count 1),
                             90 play 6000/2000;  end 120 (user_exit, 120 s, 1 rebuffer, 0 switches)
    B  user_b     start 60   heartbeats 90 play 4000/1000, 120 paused, 250 play 4000/1000
                             (130 s gap, capped at 60 s); never ends: until 250, watch 190
    C  guest      start 200  event stream_error at 210; end 260 (error, 60 s)
    D  user_a     start 100  heartbeat 130 play 2000/4000 (count 1); events: 2 buffer starts
                             (105, 115), 2 quality changes, 2 reactions, tip, follow, subscribe;
                             end 140 (user_exit, 40 s, 1 rebuffer, 3 switches)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import AppClientFactory, auth

STREAM = "stream_synth"
CREATOR = "creator_synth"
Client = TestClient[Any, Any]


def at(base: datetime, seconds: int) -> str:
    return (base + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def start(base: datetime, sid: str, user: str | None, device: str, t: int) -> dict[str, Any]:
    return {
        "session_id": sid,
        "user_id": user,
        "device_id": device,
        "platform": "ios",
        "stream": {"stream_id": STREAM, "channel_id": "ch_synth", "creator_id": CREATOR},
        "epg": {"current_program_id": "prog_x"},
        "playback": {"quality": "auto", "latency_mode": "low", "dvr_enabled": False},
        "device": {"connection_type": "cellular"},
        "geo": {"country": "US"},
        "timestamp": at(base, t),
    }


def beat(
    base: datetime,
    sid: str,
    user: str | None,
    device: str,
    t: int,
    *,
    playing: bool = True,
    buffering: bool = False,
    kbps: int | None = None,
    ms: float | None = None,
    rebuffers: int = 0,
) -> dict[str, Any]:
    return {
        "session_id": sid,
        "user_id": user,
        "device_id": device,
        "stream_id": STREAM,
        "channel_id": "ch_synth",
        "creator_id": CREATOR,
        "playback": {
            "is_playing": playing,
            "is_paused": not playing and not buffering,
            "is_buffering": buffering,
        },
        "performance": {"bitrate_kbps": kbps, "latency_ms": ms, "rebuffer_count": rebuffers},
        "timestamp": at(base, t),
    }


def end(
    base: datetime,
    sid: str,
    user: str | None,
    t: int,
    watch: int,
    reason: str,
    rebuffers: int,
    switches: int,
) -> dict[str, Any]:
    return {
        "session_id": sid,
        "user_id": user,
        "watch_summary": {
            "total_watch_seconds": watch,
            "end_reason": reason,
            "programs_watched": [],
        },
        "performance": {"total_rebuffer_count": rebuffers, "quality_switches": switches},
        "engagement": {"total_chat_messages_sent": 0, "total_reactions_sent": 2},
        "timestamp": at(base, t),
    }


def events(
    base: datetime, sid: str, user: str | None, device: str, items: list[tuple[str, int]]
) -> dict[str, Any]:
    return {
        "session_id": sid,
        "user_id": user,
        "device_id": device,
        "stream_id": STREAM,
        "creator_id": CREATOR,
        "events": [
            {"event_id": f"{sid}-{i}", "event_type": kind, "timestamp": at(base, t)}
            for i, (kind, t) in enumerate(items)
        ],
    }


async def send(client: Client, path: str, body: dict[str, Any]) -> None:
    user = body.get("user_id")
    resp = await client.post(
        f"/analytics/live/{path}", json=body, headers=auth(user) if user else {}
    )
    assert resp.status == 200, await resp.text()


async def ingest(client: Client, base: datetime) -> None:
    await send(client, "session/start", start(base, "A", "user_a", "dev_a", 0))
    await send(
        client, "session/heartbeat", beat(base, "A", "user_a", "dev_a", 30, kbps=6000, ms=2000)
    )
    await send(
        client,
        "session/heartbeat",
        beat(
            base,
            "A",
            "user_a",
            "dev_a",
            60,
            playing=False,
            buffering=True,
            kbps=3000,
            ms=3000,
            rebuffers=1,
        ),
    )
    await send(
        client,
        "session/heartbeat",
        beat(base, "A", "user_a", "dev_a", 90, kbps=6000, ms=2000, rebuffers=1),
    )
    await send(client, "session/end", end(base, "A", "user_a", 120, 120, "user_exit", 1, 0))

    await send(client, "session/start", start(base, "B", "user_b", "dev_b", 60))
    await send(
        client, "session/heartbeat", beat(base, "B", "user_b", "dev_b", 90, kbps=4000, ms=1000)
    )
    await send(client, "session/heartbeat", beat(base, "B", "user_b", "dev_b", 120, playing=False))
    await send(
        client, "session/heartbeat", beat(base, "B", "user_b", "dev_b", 250, kbps=4000, ms=1000)
    )

    await send(client, "session/start", start(base, "C", None, "dev_c", 200))
    await send(client, "events", events(base, "C", None, "dev_c", [("stream_error", 210)]))
    # A guest's end names the device that started the session (its owner).
    await send(
        client,
        "session/end",
        {**end(base, "C", None, 260, 60, "error", 0, 0), "device_id": "dev_c"},
    )

    await send(client, "session/start", start(base, "D", "user_a", "dev_d", 100))
    await send(
        client,
        "events",
        events(
            base,
            "D",
            "user_a",
            "dev_d",
            [
                ("stream_buffer_start", 105),
                ("stream_buffer_end", 108),
                ("quality_change", 110),
                ("quality_change", 112),
                ("stream_buffer_start", 115),
                ("stream_buffer_end", 117),
                ("reaction", 120),
                ("reaction", 121),
                ("tip", 125),
                ("follow", 126),
                ("subscribe", 127),
            ],
        ),
    )
    await send(
        client,
        "session/heartbeat",
        beat(base, "D", "user_a", "dev_d", 130, kbps=2000, ms=4000, rebuffers=1),
    )
    await send(client, "session/end", end(base, "D", "user_a", 140, 40, "user_exit", 1, 3))


async def test_summary_matches_hand_computed_values(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    client = await make_client()
    now = datetime.now(UTC)
    base = now.replace(second=0, microsecond=0) - timedelta(minutes=30)
    await ingest(client, base)
    resp = await client.get(f"/analytics/live/streams/{STREAM}/summary", headers=auth(CREATOR))
    assert resp.status == 200, await resp.text()
    data = (await resp.json())["data"]
    series = data.pop("last_hour")
    assert data.pop("generated_at").endswith("Z")
    assert data == {
        "stream_id": STREAM,
        "creator_id": CREATOR,
        "sessions": 4,
        "active_sessions": 1,  # B
        "unique_viewers": 3,  # user_a (two sessions), user_b, the guest's device
        "concurrent_peak": 3,  # A, B and D at 100 s
        "concurrent_peak_at": at(base, 100),
        "total_watch_seconds": 410,  # 120 + 190 + 60 + 40
        "total_watch_formatted": "6:50",
        "average_watch_seconds": 102,  # 410 // 4
        "average_watch_formatted": "1:42",
        "play_seconds": 180,  # A 30 + 30, B 30 + 60 (capped gap), D 30
        "stall_seconds": 30,  # A's buffering heartbeat
        "rebuffer_ratio": round(30 / 210, 4),
        "rebuffer_count": 3,  # A 1, D max(end 1, heartbeat 1, 2 buffer starts) = 2
        "rebuffers_per_hour": round(3 * 3600 / 410, 2),
        "average_bitrate_kbps": round(25000 / 6, 1),  # 6000 3000 6000 4000 4000 2000
        "average_latency_ms": round(13000 / 6, 1),  # 2000 3000 2000 1000 1000 4000
        "error_count": 1,
        "error_rate": 0.25,  # C of 4 sessions
        "errors_per_hour": round(3600 / 410, 2),
        "quality_switches": 3,  # D: max(end 3, 2 events)
        "engagement": {"reactions": 2, "tips": 1, "follows": 1, "subscribes": 1},
    }
    assert len(series) == 60
    minutes = [datetime.fromisoformat(m["minute"]) for m in series]
    assert minutes == sorted(minutes) and minutes[-1] <= datetime.now(UTC)
    by_minute = {m["minute"]: m for m in series}

    def minute(k: int) -> dict[str, Any]:
        entry: dict[str, Any] = by_minute[at(base, 60 * k)]
        return {
            key: entry[key]
            for key in ("concurrent_viewers", "average_bitrate_kbps", "rebuffer_events")
        }

    assert minute(-1) == {
        "concurrent_viewers": 0,
        "average_bitrate_kbps": None,
        "rebuffer_events": 0,
    }
    assert minute(0) == {
        "concurrent_viewers": 1,
        "average_bitrate_kbps": 6000.0,
        "rebuffer_events": 0,
    }
    assert minute(1) == {
        "concurrent_viewers": 3,
        "average_bitrate_kbps": round(13000 / 3, 1),
        "rebuffer_events": 2,
    }
    assert minute(2) == {
        "concurrent_viewers": 2,
        "average_bitrate_kbps": 2000.0,
        "rebuffer_events": 0,
    }
    assert minute(3) == {
        "concurrent_viewers": 2,
        "average_bitrate_kbps": None,
        "rebuffer_events": 0,
    }
    assert minute(4) == {
        "concurrent_viewers": 2,
        "average_bitrate_kbps": 4000.0,
        "rebuffer_events": 0,
    }
    assert minute(5)["concurrent_viewers"] == 0
    # Re-sending everything (client retries) changes no number.
    await ingest(client, base)
    again = (
        await (
            await client.get(
                f"/analytics/live/streams/{STREAM}/summary", headers=auth("ops", admin=True)
            )
        ).json()
    )["data"]
    again.pop("generated_at")
    assert again.pop("last_hour") == series and again == data


async def test_summary_access(make_client: AppClientFactory, db: asyncpg.Pool) -> None:
    client = await make_client()
    base = datetime.now(UTC) - timedelta(minutes=5)
    await send(client, "session/start", start(base, "S1", None, "dev_1", 0))
    path = f"/analytics/live/streams/{STREAM}/summary"
    assert (await client.get(path)).status == 401
    assert (await client.get(path, headers={"Authorization": "Bearer forged"})).status == 401
    assert (await client.get(path, headers=auth("someone_else"))).status == 403
    assert (await client.get(path, headers=auth(CREATOR))).status == 200
    assert (await client.get(path, headers=auth("ops", admin=True))).status == 200
    for headers in (auth(CREATOR), auth("ops", admin=True)):
        resp = await client.get(
            "/analytics/live/streams/stream_nobody_knows/summary", headers=headers
        )
        body = await resp.json()
        assert (resp.status, body["status"], body["field"]) == (404, "error", "stream_id")


async def test_platform_owner_beats_what_players_report(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    """A player cannot claim someone's stream by sending its own creator_id."""
    await db.execute("insert into creators (creator_id, name) values ('creator_real', 'Real')")
    await db.execute(
        "insert into channels (channel_id, creator_id, channel_name, channel_number) "
        "values ('ch_real', 'creator_real', 'Real 24/7', 9901)"
    )
    await db.execute(
        f"insert into streams (stream_id, channel_id, title) values ('{STREAM}', 'ch_real', 'Live')"
    )
    client = await make_client()
    await send(client, "session/start", start(datetime.now(UTC), "S1", None, "dev_1", 0))
    path = f"/analytics/live/streams/{STREAM}/summary"
    assert (await client.get(path, headers=auth(CREATOR))).status == 403
    resp = await client.get(path, headers=auth("creator_real"))
    assert resp.status == 200
    data = (await resp.json())["data"]
    assert (data["creator_id"], data["sessions"]) == ("creator_real", 1)
