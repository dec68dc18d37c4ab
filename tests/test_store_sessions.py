"""Watch sessions and presence against real PostgreSQL: limits, liveness, counts, peaks."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from store import channel_writes, channels, presence, sessions, sockets, viewers

TTL = 75.0
MAX_AGE = 3600.0


async def _create_sweeping(
    pool: asyncpg.Pool,
    user: str = "user_a",
    *,
    device: str = "web",
    channel: str = "ch_101",
    ttl: float = TTL,
    max_age: float = MAX_AGE,
    limit: int = 3,
) -> tuple[sessions.WatchSession, list[sessions.WatchSession]]:
    """POST watch's store call: the new session and the user's quiet ones it ended."""
    creator, stream = {
        "ch_101": ("creator_001", "stream_abc123"),
        "ch_102": ("creator_002", "stream_def456"),
    }[channel]
    return await sessions.create_session(
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


async def _create(pool: asyncpg.Pool, user: str = "user_a", **kw: Any) -> sessions.WatchSession:
    return (await _create_sweeping(pool, user, **kw))[0]


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


async def test_claims_take_only_the_callers_live_sessions(demo_db: asyncpg.Pool) -> None:
    a, b = await _create(demo_db), await _create(demo_db)
    short = await _create(demo_db, "user_c", max_age=0.3)
    await sessions.end_session(demo_db, b.session_id, "user_exit")
    await asyncio.sleep(0.5)
    reqs = [
        sockets.ClaimRequest(a.session_id, "user_a", "creator_001"),
        sockets.ClaimRequest(b.session_id, "user_a", "creator_001"),
        sockets.ClaimRequest(short.session_id, "user_c", "creator_001"),
        sockets.ClaimRequest("sess_watch_unknown", "user_a", "creator_001"),
    ]
    found = await sockets.claim_sessions(demo_db, reqs, "inst_1")
    assert {sid for sid, c in found.items() if c.touched} == {a.session_id}
    assert set(found) == {a.session_id, b.session_id, short.session_id}
    taken = await sessions.get_session(demo_db, a.session_id)
    assert taken is not None and taken.socket_instance == "inst_1"
    # Nobody else's session is taken, and the previous holder is reported.
    other = await sockets.claim_sessions(
        demo_db, [sockets.ClaimRequest(a.session_id, "user_x", "creator_001")], "inst_2"
    )
    assert not other[a.session_id].touched
    again = await sockets.claim_sessions(demo_db, reqs[:1], "inst_2")
    assert again[a.session_id].held_by == "inst_1"


async def test_ledger_batches_concurrent_claims(demo_db: asyncpg.Pool) -> None:
    made = [await _create(demo_db, f"user_{i}") for i in range(20)]
    ledger = sockets.SocketLedger(demo_db, "inst_1")
    claims = await asyncio.gather(
        *(ledger.claim(s.session_id, user_id=s.user_id, creator_id="creator_001") for s in made)
    )
    assert all(c.touched for c in claims)
    assert ledger.batches == 1
    ledger.release(made[0].session_id)
    await ledger.close()
    released = await sessions.get_session(demo_db, made[0].session_id)
    assert released is not None and released.socket_instance is None


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


async def test_sessions_held_by_a_live_instance_are_not_quiet(demo_db: asyncpg.Pool) -> None:
    """An open socket costs no per-session write: its instance's one row keeps it live."""
    held = await _create(demo_db, ttl=0.3)
    await _create(demo_db, ttl=0.3)  # quiet: no socket, no heartbeat
    ledger = sockets.SocketLedger(demo_db, "inst_1")
    assert (await ledger.claim(held.session_id, user_id="user_a", creator_id="creator_001")).touched
    await asyncio.sleep(0.5)
    await ledger.alive()
    _, swept = await _create_sweeping(demo_db, ttl=0.3)
    assert held.session_id not in {s.session_id for s in swept} and len(swept) == 1
    # The instance stops proving it lives (as after kill -9): its session goes quiet too.
    await asyncio.sleep(0.5)
    with pytest.raises(sessions.ConcurrentLimitReached):
        await _create(demo_db, ttl=30.0, limit=2)
    _, swept = await _create_sweeping(demo_db, ttl=0.3)
    assert held.session_id in {s.session_id for s in swept}
    await ledger.close()


async def test_new_session_sweeps_quiet_ones(demo_db: asyncpg.Pool) -> None:
    quiet = [await _create(demo_db, ttl=0.3) for _ in range(3)]
    await asyncio.sleep(0.5)
    fresh, swept = await _create_sweeping(demo_db, ttl=0.3)
    assert sorted(s.session_id for s in swept) == sorted(q.session_id for q in quiet)
    assert all(s.end_reason == "timeout" for s in swept)
    # A swept session cannot be revived past the limit: a socket cannot claim it.
    found = await sockets.claim_sessions(
        demo_db,
        [sockets.ClaimRequest(q.session_id, "user_a", "creator_001") for q in quiet],
        "inst_1",
    )
    assert not any(c.touched for c in found.values())
    assert fresh.ended_at is None


async def test_peaks_never_lowered(demo_db: asyncpg.Pool) -> None:
    assert (await viewers.record_peaks(demo_db, "ch_101", 4))[:2] == (4, 4)
    assert (await viewers.record_peaks(demo_db, "ch_101", 1))[:2] == (4, 4)
    stored: Any = await demo_db.fetchrow(
        "select (select peak from channel_peaks_daily where channel_id = 'ch_101') as d,"
        " (select peak from channel_peaks_all_time where channel_id = 'ch_101') as a"
    )
    assert (stored["d"], stored["a"]) == (4, 4)


async def test_concurrent_readings_keep_the_highest_peak(demo_db: asyncpg.Pool) -> None:
    results = await asyncio.gather(
        *(viewers.record_peaks(demo_db, "ch_101", n) for n in (3, 6, 2, 5, 6, 1, 4, 0))
    )
    assert max(r[0] for r in results) == 6
    assert (await viewers.record_peaks(demo_db, "ch_101", 0))[:2] == (6, 6)


async def test_viewer_counts_join_presence_and_peaks(demo_db: asyncpg.Pool) -> None:
    live = presence.LocalPresence()
    await live.share("i1", "ch_101", {"web": 2, "ios": 1}, TTL)
    await live.poll("ch_101", "s1", "roku", socket_instance=None, ttl=TTL)
    counts = await viewers.viewer_counts(live, demo_db, "ch_101", ttl=TTL)
    assert (counts.watching_now, counts.peak_today, counts.peak_all_time) == (4, 4, 4)
    assert counts.by_device["web"] == 2 and sum(counts.by_device.values()) == 4


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
