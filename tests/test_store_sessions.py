"""Watch sessions and presence against real PostgreSQL: limits, liveness, counts, peaks."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from store import channel_writes, channels, presence, sessions

TTL = 75.0
MAX_AGE = 3600.0


async def _create(
    pool: asyncpg.Pool,
    user: str = "user_a",
    *,
    device: str = "web",
    channel: str = "ch_101",
    ttl: float = TTL,
    max_age: float = MAX_AGE,
    limit: int = 3,
) -> sessions.WatchSession:
    creator, stream = {
        "ch_101": ("creator_001", "stream_abc123"),
        "ch_102": ("creator_002", "stream_def456"),
    }[channel]
    created, _ = await sessions.create_session(
        pool,
        user_id=user,
        creator_id=creator,
        channel_id=channel,
        stream_id=stream,
        device_type=device,
        quality="auto",
        timezone="UTC",
        ttl=ttl,
        max_age=max_age,
        limit=limit,
    )
    return created


async def test_create_get_and_fields(demo_db: asyncpg.Pool) -> None:
    s = await _create(demo_db)
    assert s.session_id.startswith("sess_watch_")
    assert s.ended_at is None
    assert (s.expires_at - s.started_at).total_seconds() == pytest.approx(MAX_AGE)
    again = await sessions.get_session(demo_db, s.session_id)
    assert again == s
    assert await sessions.get_session(demo_db, "sess_watch_missing") is None


async def test_limit_holds_under_race(demo_db: asyncpg.Pool) -> None:
    results = await asyncio.gather(*(_create(demo_db) for _ in range(10)), return_exceptions=True)
    ok = [r for r in results if isinstance(r, sessions.WatchSession)]
    refused = [r for r in results if isinstance(r, sessions.ConcurrentLimitReached)]
    assert (len(ok), len(refused)) == (3, 7)
    assert await sessions.live_session_count(demo_db, "user_a") == 3
    # Another user is not affected by user_a's limit.
    assert (await _create(demo_db, "user_b")).user_id == "user_b"


async def test_ending_a_session_frees_a_slot(demo_db: asyncpg.Pool) -> None:
    made = [await _create(demo_db) for _ in range(3)]
    with pytest.raises(sessions.ConcurrentLimitReached):
        await _create(demo_db)
    await sessions.end_session(demo_db, made[0].session_id, "user_exit")
    assert (await _create(demo_db)).ended_at is None


async def test_end_is_idempotent(demo_db: asyncpg.Pool) -> None:
    s = await _create(demo_db)
    first = await sessions.end_session(demo_db, s.session_id, "user_exit")
    await asyncio.sleep(0.01)
    second = await sessions.end_session(demo_db, s.session_id, "other")
    assert first is not None and second is not None
    assert first.ended_at is not None
    assert second.ended_at == first.ended_at
    assert second.end_reason == "user_exit"
    assert await sessions.end_session(demo_db, "sess_watch_nope", "x") is None


async def test_touch_returns_only_live_sessions(demo_db: asyncpg.Pool) -> None:
    a, b = await _create(demo_db), await _create(demo_db)
    short = await _create(demo_db, "user_c", max_age=0.3)
    await sessions.end_session(demo_db, b.session_id, "user_exit")
    await asyncio.sleep(0.5)
    live = await sessions.touch_sessions(
        demo_db, [a.session_id, b.session_id, short.session_id, "sess_watch_unknown"]
    )
    assert live == [a.session_id]
    touched = await sessions.get_session(demo_db, a.session_id)
    assert touched is not None and touched.last_seen_at > a.last_seen_at
    assert await sessions.touch_sessions(demo_db, []) == []


async def test_update_quality_only_while_live(demo_db: asyncpg.Pool) -> None:
    s = await _create(demo_db)
    changed = await sessions.update_quality(demo_db, s.session_id, "720p")
    assert changed is not None and changed.quality == "720p"
    moved = await sessions.update_session(demo_db, s.session_id, quality="480p", device_type="roku")
    assert moved is not None and (moved.quality, moved.device_type) == ("480p", "roku")
    await sessions.end_session(demo_db, s.session_id, "user_exit")
    assert await sessions.update_quality(demo_db, s.session_id, "360p") is None


async def test_report_viewers_returns_previous(demo_db: asyncpg.Pool) -> None:
    s = await _create(demo_db)
    assert await sessions.report_viewers(demo_db, s.session_id, 5) == 0
    assert await sessions.report_viewers(demo_db, s.session_id, 7) == 5


async def test_counts_exact_by_device(demo_db: asyncpg.Pool) -> None:
    empty = await presence.viewer_counts(demo_db, "ch_101", ttl=TTL)
    assert empty.watching_now == 0
    assert empty.by_device == dict.fromkeys(
        ("web", "ios", "android", "roku", "firetv", "appletv"), 0
    )
    made = []
    for i, device in enumerate(["web", "web", "ios", "roku", "appletv"]):
        made.append(await _create(demo_db, f"user_{i}", device=device))
    await _create(demo_db, "user_x", channel="ch_102")  # another channel does not count
    counts = await presence.viewer_counts(demo_db, "ch_101", ttl=TTL)
    assert counts.watching_now == 5
    assert counts.by_device == {
        "web": 2,
        "ios": 1,
        "android": 0,
        "roku": 1,
        "firetv": 0,
        "appletv": 1,
    }
    assert sum(counts.by_device.values()) == counts.watching_now
    await sessions.end_session(demo_db, made[0].session_id, "user_exit")
    after = await presence.viewer_counts(demo_db, "ch_101", ttl=TTL)
    assert after.watching_now == 4 and after.by_device["web"] == 1


async def test_quiet_sessions_drop_out_and_come_back(demo_db: asyncpg.Pool) -> None:
    s = await _create(demo_db)
    assert (await presence.viewer_counts(demo_db, "ch_101", ttl=0.4)).watching_now == 1
    await asyncio.sleep(0.6)
    assert (await presence.viewer_counts(demo_db, "ch_101", ttl=0.4)).watching_now == 0
    assert await sessions.touch_sessions(demo_db, [s.session_id]) == [s.session_id]
    assert (await presence.viewer_counts(demo_db, "ch_101", ttl=0.4)).watching_now == 1


async def test_new_session_sweeps_quiet_ones(demo_db: asyncpg.Pool) -> None:
    quiet = [await _create(demo_db, ttl=0.3) for _ in range(3)]
    await asyncio.sleep(0.5)
    fresh, swept = await sessions.create_session(
        demo_db,
        user_id="user_a",
        creator_id="creator_001",
        channel_id="ch_101",
        stream_id="stream_abc123",
        device_type="web",
        quality="auto",
        timezone="UTC",
        ttl=0.3,
        max_age=MAX_AGE,
        limit=3,
    )
    assert sorted(s.session_id for s in swept) == sorted(q.session_id for q in quiet)
    assert all(s.end_reason == "timeout" for s in swept)
    # A swept session cannot be revived past the limit.
    assert await sessions.touch_sessions(demo_db, [q.session_id for q in quiet]) == []
    assert fresh.ended_at is None


async def test_peaks_never_lowered(demo_db: asyncpg.Pool) -> None:
    made = [await _create(demo_db, f"user_{i}") for i in range(4)]
    high = await presence.viewer_counts(demo_db, "ch_101", ttl=TTL)
    assert (high.peak_today, high.peak_all_time) == (4, 4)
    for s in made[:3]:
        await sessions.end_session(demo_db, s.session_id, "user_exit")
    low = await presence.viewer_counts(demo_db, "ch_101", ttl=TTL)
    assert low.watching_now == 1
    assert (low.peak_today, low.peak_all_time) == (4, 4)
    stored: Any = await demo_db.fetchrow(
        "select (select peak from channel_peaks_daily where channel_id = 'ch_101') as d,"
        " (select peak from channel_peaks_all_time where channel_id = 'ch_101') as a"
    )
    assert (stored["d"], stored["a"]) == (4, 4)


async def test_concurrent_counts_keep_the_highest_peak(demo_db: asyncpg.Pool) -> None:
    for i in range(6):
        await _create(demo_db, f"user_{i}")
    results = await asyncio.gather(
        *(presence.viewer_counts(demo_db, "ch_101", ttl=TTL) for _ in range(8))
    )
    assert {r.watching_now for r in results} == {6}
    final = await presence.viewer_counts(demo_db, "ch_101", ttl=TTL)
    assert (final.peak_today, final.peak_all_time) == (6, 6)


async def test_going_offline_ends_the_streams_sessions(demo_db: asyncpg.Pool) -> None:
    s = await _create(demo_db)
    other = await _create(demo_db, "user_b", channel="ch_102")
    result = await channel_writes.go_offline(demo_db, "ch_101")
    assert result is not None
    stream, ended = result
    assert stream.stream_id == "stream_abc123" and stream.ended_at is not None
    assert ended == [s.session_id]
    gone = await sessions.get_session(demo_db, s.session_id)
    assert gone is not None and gone.end_reason == "stream_offline"
    assert await channels.get_live_stream(demo_db, "ch_101") is None
    assert await channel_writes.go_offline(demo_db, "ch_101") is None
    still = await sessions.get_session(demo_db, other.session_id)
    assert still is not None and still.ended_at is None


async def test_programs_between_and_snapshot(demo_db: asyncpg.Pool) -> None:
    snap = await channels.channel_snapshot(demo_db, "creator_001")
    assert snap is not None and snap.channel is not None and snap.stream is not None
    assert (snap.creator.name, snap.channel.channel_id, snap.stream.stream_id) == (
        "Chris Spencer",
        "ch_101",
        "stream_abc123",
    )
    around = await channels.programs_between(
        demo_db, "ch_101", snap.now - timedelta(hours=1), snap.now + timedelta(hours=1)
    )
    ids = [p.program_id for p in around]
    assert "prog_002" in ids and "prog_003" in ids
    assert [p.starts_at for p in around] == sorted(p.starts_at for p in around)
    offline = await channels.channel_snapshot(demo_db, "creator_003")
    assert offline is not None and offline.stream is None
    assert await channels.channel_snapshot(demo_db, "creator_999") is None
