"""Reading live analytics back: the session sweeper, the per-stream QoE totals, who owns what.

The sweeper closes sessions silent (server clock, any message) for `timeout`
seconds with `end_reason = timeout`, ending them at their last heartbeat
(client clock), or at their start if they never sent one; their watch time is
that span. `stream_totals` and `stream_minutes` aggregate one stream for the
summary endpoint (protocol.analytics_summary turns them into the response);
`stream_creator` and `session_owner` answer who may read or write what.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg

from protocol.analytics import MAX_WATCH_SECONDS
from protocol.analytics_summary import MinuteTotals, StreamTotals
from store.analytics_ops import STATEMENT_TIMEOUT
from store.errors import edge

__all__ = [
    "SessionOwner",
    "session_owner",
    "stream_creator",
    "stream_minutes",
    "stream_totals",
    "sweep",
]

# --- sweeper ------------------------------------------------------------------------------------

_SWEEP_SQL: Final = """
update analytics_sessions set
    ended_at = greatest(started_at, last_heartbeat_at),
    end_received_at = $1,
    end_reason = 'timeout',
    closed_by = 'sweeper',
    total_watch_seconds = least(
        floor(extract(epoch from greatest(started_at, last_heartbeat_at) - started_at)), $3)::int
where ended_at is null and last_seen_at < $2
"""


@edge
async def sweep(pool: asyncpg.Pool, *, now: datetime, timeout: float) -> int:
    """Close sessions with no message for `timeout` seconds (by `now`); return how many.

    Several instances may sweep at once: the update's WHERE is re-checked per row,
    so each session is closed once.
    """
    status = await pool.execute(
        _SWEEP_SQL,
        now,
        now - timedelta(seconds=timeout),
        MAX_WATCH_SECONDS,
        timeout=STATEMENT_TIMEOUT,
    )
    return int(status.rsplit(" ", 1)[1])


# --- QoE summary ----------------------------------------------------------------------------------
#
# Definitions (client clocks throughout, since retried data arrives late):
# - a session's interval is [started_at, until) with until = ended_at, or for an open session
#   its last heartbeat; a session with no positive interval never counts as concurrent.
# - concurrent_peak: the most intervals overlapping at one instant (an interval ending at t
#   does not overlap one starting at t).
# - watch seconds: the player's total_watch_seconds for ended sessions (the sweeper's for
#   timed-out ones), else until - started_at.
# - unique viewers: distinct user_id, or device_id for guests.
# - play/stall time: each heartbeat covers the time since the session's previous heartbeat
#   (or its start), capped at `gap_cap` seconds so lost heartbeats count for nothing; that
#   time is stall if the heartbeat says is_buffering, play if is_playing, neither if paused.
#   rebuffer_ratio = stall / (play + stall).
# - rebuffer_count: per session the largest of the end's total_rebuffer_count, the highest
#   heartbeat rebuffer_count and the number of stream_buffer_start events (three counts of
#   the same stalls: the largest wins so a player that reports only one is not undercounted);
#   quality_switches likewise from the end's quality_switches and quality_change events.
# - average bitrate / latency: mean over heartbeats that report them.
# - error_rate: sessions with a stream_error event or end_reason error, over sessions;
#   errors_per_hour: stream_error events per hour of watch time.
# - per-minute series: sessions overlapping the minute, mean heartbeat bitrate in it, and
#   stream_buffer_start events in it, for the 60 minutes ending with the current one.

_SESSIONS_SQL: Final = """
with s as (
    select session_id, coalesce(user_id, 'device:' || device_id) as viewer,
           ended_at is null as active, end_reason, total_rebuffer_count, quality_switches,
           coalesce(total_watch_seconds::float8,
                    extract(epoch from greatest(started_at, last_heartbeat_at) - started_at)::float8)
               as watch_seconds
    from analytics_sessions where stream_id = $1
), hb as (
    select session_id, max(rebuffer_count) as n
    from analytics_heartbeats where stream_id = $1 group by session_id
), ev as (
    select session_id,
           count(*) filter (where event_type = 'stream_buffer_start') as buffer_starts,
           count(*) filter (where event_type = 'quality_change') as quality_changes,
           count(*) filter (where event_type = 'stream_error') as errors
    from analytics_events where stream_id = $1 group by session_id
)
select count(*)::int as sessions,
       (count(*) filter (where s.active))::int as active_sessions,
       count(distinct s.viewer)::int as unique_viewers,
       coalesce(sum(s.watch_seconds), 0)::float8 as total_watch_seconds,
       coalesce(sum(greatest(coalesce(s.total_rebuffer_count, 0), coalesce(hb.n, 0),
                             coalesce(ev.buffer_starts, 0))), 0)::int as rebuffer_count,
       coalesce(sum(greatest(coalesce(s.quality_switches, 0),
                             coalesce(ev.quality_changes, 0))), 0)::int as quality_switches,
       (count(*) filter (where coalesce(ev.errors, 0) > 0 or s.end_reason = 'error'))::int
           as error_sessions
from s left join hb using (session_id) left join ev using (session_id)
"""

_PEAK_SQL: Final = """
with s as (
    select started_at, coalesce(ended_at, greatest(started_at, last_heartbeat_at)) as until_at
    from analytics_sessions where stream_id = $1
), e as (
    select started_at as at, 1 as delta from s where until_at > started_at
    union all
    select until_at, -1 from s where until_at > started_at
), r as (
    select at, sum(delta) over (order by at, delta rows between unbounded preceding and current row) as n
    from e
)
select n::int as peak, at from r order by n desc, at limit 1
"""

_QOE_SQL: Final = """
with h as (
    select h.is_playing, h.is_buffering, h.bitrate_kbps, h.latency_ms,
           least(greatest(extract(epoch from h.client_ts
                                  - coalesce(lag(h.client_ts) over w, s.started_at))::float8, 0),
                 $2) as dt
    from analytics_heartbeats h left join analytics_sessions s using (session_id)
    where h.stream_id = $1
    window w as (partition by h.session_id order by h.client_ts)
)
select coalesce(sum(dt) filter (where is_buffering), 0)::float8 as stall,
       coalesce(sum(dt) filter (where is_playing and not is_buffering), 0)::float8 as play,
       avg(bitrate_kbps)::float8 as bitrate, avg(latency_ms)::float8 as latency
from h
"""

_EVENT_COUNTS_SQL: Final = """
select (count(*) filter (where event_type = 'stream_error'))::int as errors,
       (count(*) filter (where event_type = 'reaction'))::int as reactions,
       (count(*) filter (where event_type = 'tip'))::int as tips,
       (count(*) filter (where event_type = 'follow'))::int as follows,
       (count(*) filter (where event_type = 'subscribe'))::int as subscribes
from analytics_events where stream_id = $1
"""

_MINUTES_SQL: Final = """
with bounds as (
    select date_trunc('minute', $2::timestamptz, 'UTC') - interval '59 minutes' as first,
           date_trunc('minute', $2::timestamptz, 'UTC') as last
), m as (
    select generate_series(first, last, interval '1 minute') as minute from bounds
), s as (
    select started_at, coalesce(ended_at, greatest(started_at, last_heartbeat_at)) as until_at
    from analytics_sessions, bounds
    where stream_id = $1 and coalesce(ended_at, greatest(started_at, last_heartbeat_at)) > bounds.first
), h as (
    select date_trunc('minute', client_ts, 'UTC') as minute, avg(bitrate_kbps)::float8 as bitrate
    from analytics_heartbeats, bounds
    where stream_id = $1 and client_ts >= bounds.first
    group by 1
), e as (
    select date_trunc('minute', client_ts, 'UTC') as minute, count(*)::int as n
    from analytics_events, bounds
    where stream_id = $1 and event_type = 'stream_buffer_start' and client_ts >= bounds.first
    group by 1
)
select m.minute,
       (select count(*) from s where s.until_at > s.started_at
            and s.started_at < m.minute + interval '1 minute' and s.until_at > m.minute)::int
           as concurrent,
       h.bitrate, coalesce(e.n, 0) as rebuffers
from m left join h using (minute) left join e using (minute)
order by m.minute
"""


@edge
async def stream_totals(
    conn: asyncpg.Connection, stream_id: str, *, gap_cap: float
) -> StreamTotals:
    """The stream's aggregates (definitions above); run inside one read-only transaction."""
    s = await conn.fetchrow(_SESSIONS_SQL, stream_id, timeout=STATEMENT_TIMEOUT)
    peak = await conn.fetchrow(_PEAK_SQL, stream_id, timeout=STATEMENT_TIMEOUT)
    q = await conn.fetchrow(_QOE_SQL, stream_id, gap_cap, timeout=STATEMENT_TIMEOUT)
    e = await conn.fetchrow(_EVENT_COUNTS_SQL, stream_id, timeout=STATEMENT_TIMEOUT)
    assert s is not None and q is not None and e is not None
    return StreamTotals(
        sessions=s["sessions"],
        active_sessions=s["active_sessions"],
        unique_viewers=s["unique_viewers"],
        concurrent_peak=peak["peak"] if peak else 0,
        concurrent_peak_at=peak["at"] if peak and peak["peak"] > 0 else None,
        total_watch_seconds=s["total_watch_seconds"],
        play_seconds=q["play"],
        stall_seconds=q["stall"],
        rebuffer_count=s["rebuffer_count"],
        average_bitrate_kbps=q["bitrate"],
        average_latency_ms=q["latency"],
        error_count=e["errors"],
        error_sessions=s["error_sessions"],
        quality_switches=s["quality_switches"],
        reactions=e["reactions"],
        tips=e["tips"],
        follows=e["follows"],
        subscribes=e["subscribes"],
    )


@edge
async def stream_minutes(
    conn: asyncpg.Connection, stream_id: str, *, now: datetime
) -> list[MinuteTotals]:
    """The 60 one-minute buckets ending with the one holding `now`, oldest first."""
    rows = await conn.fetch(_MINUTES_SQL, stream_id, now, timeout=STATEMENT_TIMEOUT)
    return [
        MinuteTotals(
            minute=r["minute"],
            concurrent_viewers=r["concurrent"],
            average_bitrate_kbps=r["bitrate"],
            rebuffer_events=r["rebuffers"],
        )
        for r in rows
    ]


_PLATFORM_CREATOR_SQL: Final = """
select c.creator_id from streams st join channels c on c.channel_id = st.channel_id
where st.stream_id = $1
"""

_REPORTED_CREATOR_SQL: Final = """
select creator_id from analytics_sessions
where stream_id = $1 and creator_id is not null
group by creator_id order by count(*) desc, creator_id limit 1
"""


@edge
async def stream_creator(conn: asyncpg.Connection, stream_id: str) -> str | None:
    """Who owns `stream_id`: the platform's streams/channels tables when they know the stream
    (players cannot forge that), else the creator_id most of its analytics sessions report.
    None when nobody knows the stream."""
    try:
        owner = await conn.fetchval(_PLATFORM_CREATOR_SQL, stream_id, timeout=STATEMENT_TIMEOUT)
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
        owner = None  # a schema without the platform tables: fall back to what players report
    if owner is not None:
        return str(owner)
    reported = await conn.fetchval(_REPORTED_CREATOR_SQL, stream_id, timeout=STATEMENT_TIMEOUT)
    return None if reported is None else str(reported)


@dataclass(frozen=True, slots=True)
class SessionOwner:
    """Who started an analytics session: the user, or for a guest the device."""

    user_id: str | None
    device_id: str | None

    def admits(self, user_id: str | None, device_id: str | None) -> bool:
        """A user's session takes that user only; a guest's session that guest device only."""
        if self.user_id is not None:
            return user_id == self.user_id
        return user_id is None and (self.device_id is None or device_id == self.device_id)


@edge
async def session_owner(pool: asyncpg.Pool, session_id: str) -> SessionOwner | None:
    """The owner of `session_id`, or None while the server has never heard of it."""
    record = await pool.fetchrow(
        "select user_id, device_id from analytics_sessions where session_id = $1",
        session_id,
        timeout=STATEMENT_TIMEOUT,
    )
    if record is None:
        return None
    return SessionOwner(user_id=record["user_id"], device_id=record["device_id"])
