"""Writing one batch of analytics ops: one transaction, one set-based statement per kind.

`write_batch` runs the ops of many requests (store.analytics_ops) as `unnest`
arrays with `ON CONFLICT`, so a batch costs a handful of statements however
many rows it holds. A heartbeat, events or an end for a session the server
never saw start (the start was lost, or the player kept its session across a
server restart) create the session implicitly from the body's ids, starting
at the earliest client timestamp seen. A heartbeat after the player ended the
session is stored but changes nothing else; one newer than a sweeper's close
reopens the session (the silence was a gap, not an exit).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, TypeVar

import asyncpg

from store.analytics_ops import (
    STATEMENT_TIMEOUT,
    EndOp,
    EndResult,
    EventsOp,
    HeartbeatOp,
    Op,
    StartOp,
)

__all__ = ["write_batch"]

# --- SQL: one statement per kind per batch ------------------------------------------------------

_START_SQL: Final = """
insert into analytics_sessions as s
    (session_id, user_id, device_id, platform, app_version, stream_id, channel_id, creator_id,
     program_id, implicit, started_at, started_at_text, start_received_at, start_payload, last_seen_at)
select session_id, user_id, device_id, platform, app_version, stream_id, channel_id, creator_id,
       program_id, false, started_at, started_at_text, received_at, payload::jsonb, received_at
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::timestamptz[], $11::text[], $12::timestamptz[], $13::text[])
     as t(session_id, user_id, device_id, platform, app_version, stream_id, channel_id, creator_id,
          program_id, started_at, started_at_text, received_at, payload)
on conflict (session_id) do update set
    user_id = coalesce(excluded.user_id, s.user_id), device_id = excluded.device_id,
    platform = excluded.platform, app_version = excluded.app_version,
    stream_id = excluded.stream_id, channel_id = excluded.channel_id,
    creator_id = excluded.creator_id, program_id = excluded.program_id, implicit = false,
    started_at = excluded.started_at, started_at_text = excluded.started_at_text,
    start_received_at = excluded.start_received_at, start_payload = excluded.start_payload,
    last_seen_at = greatest(s.last_seen_at, excluded.last_seen_at)
where s.implicit
"""

_IMPLICIT_SQL: Final = """
insert into analytics_sessions as s
    (session_id, user_id, device_id, stream_id, channel_id, creator_id, program_id, implicit,
     started_at, last_seen_at)
select session_id, user_id, device_id, stream_id, channel_id, creator_id, program_id, true,
       started_at, last_seen_at
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::timestamptz[], $9::timestamptz[])
     as t(session_id, user_id, device_id, stream_id, channel_id, creator_id, program_id,
          started_at, last_seen_at)
on conflict (session_id) do update set started_at = excluded.started_at
where s.implicit and excluded.started_at < s.started_at
"""

_HEARTBEAT_SQL: Final = """
insert into analytics_heartbeats
    (session_id, client_ts, client_ts_text, received_at, user_id, device_id, stream_id, channel_id,
     creator_id, program_id, is_playing, is_paused, is_buffering, quality, bitrate_kbps, latency_ms,
     rebuffer_count, buffer_health_seconds, body)
select session_id, client_ts, client_ts_text, received_at, user_id, device_id, stream_id,
       channel_id, creator_id, program_id, is_playing, is_paused, is_buffering, quality,
       bitrate_kbps, latency_ms, rebuffer_count, buffer_health_seconds, body::jsonb
from unnest($1::text[], $2::timestamptz[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[], $12::bool[], $13::bool[],
            $14::text[], $15::int[], $16::float8[], $17::int[], $18::float8[], $19::text[])
     as t(session_id, client_ts, client_ts_text, received_at, user_id, device_id, stream_id,
          channel_id, creator_id, program_id, is_playing, is_paused, is_buffering, quality,
          bitrate_kbps, latency_ms, rebuffer_count, buffer_health_seconds, body)
on conflict (session_id, client_ts) do nothing
"""

# A heartbeat newer than a sweeper's close reopens the session.
_REOPEN_SQL: Final = """
update analytics_sessions s set
    ended_at = null, ended_at_text = null, end_received_at = null, end_reason = null,
    closed_by = null, total_watch_seconds = null
from (select session_id, max(client_ts) as ts
      from unnest($1::text[], $2::timestamptz[]) as t(session_id, client_ts)
      group by session_id) i
where s.session_id = i.session_id and s.closed_by = 'sweeper' and i.ts > s.ended_at
"""

_TOUCH_HEARTBEAT_SQL: Final = """
update analytics_sessions s set
    last_seen_at = greatest(s.last_seen_at, i.seen),
    last_heartbeat_at = greatest(s.last_heartbeat_at, i.ts)
from (select session_id, max(client_ts) as ts, max(received_at) as seen
      from unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) as t(session_id, client_ts, received_at)
      group by session_id) i
where s.session_id = i.session_id and s.ended_at is null
"""

_EVENTS_SQL: Final = """
insert into analytics_events
    (event_id, session_id, user_id, device_id, stream_id, channel_id, creator_id, event_type,
     client_ts, client_ts_text, received_at, metadata)
select event_id, session_id, user_id, device_id, stream_id, channel_id, creator_id, event_type,
       client_ts, client_ts_text, received_at, metadata::jsonb
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::timestamptz[], $10::text[], $11::timestamptz[], $12::text[])
     as t(event_id, session_id, user_id, device_id, stream_id, channel_id, creator_id, event_type,
          client_ts, client_ts_text, received_at, metadata)
on conflict (event_id) do nothing
"""

_TOUCH_SEEN_SQL: Final = """
update analytics_sessions s set last_seen_at = greatest(s.last_seen_at, i.seen)
from (select session_id, max(received_at) as seen
      from unnest($1::text[], $2::timestamptz[]) as t(session_id, received_at)
      group by session_id) i
where s.session_id = i.session_id and s.ended_at is null
"""

# Insert-or-close, then answer every requested session with its stored end (also the
# ones a previous player end already closed, which the upsert's WHERE leaves alone).
_END_SQL: Final = """
with i as (
    select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[], $8::text[], $9::timestamptz[], $10::text[], $11::int[],
                         $12::int[], $13::int[], $14::int[], $15::int[], $16::text[], $17::text[])
        as t(session_id, user_id, device_id, stream_id, channel_id, creator_id, ended_at,
             ended_at_text, received_at, end_reason, total_watch_seconds, total_rebuffer_count,
             quality_switches, chat_messages, reactions, programs_watched, payload)
), up as (
    insert into analytics_sessions as s
        (session_id, user_id, device_id, stream_id, channel_id, creator_id, implicit, started_at,
         last_seen_at, ended_at, ended_at_text, end_received_at, end_reason, closed_by,
         total_watch_seconds, total_rebuffer_count, quality_switches, total_chat_messages_sent,
         total_reactions_sent, programs_watched, end_payload)
    select session_id, user_id, device_id, stream_id, channel_id, creator_id, true,
           ended_at - make_interval(secs => total_watch_seconds), received_at, ended_at,
           ended_at_text, received_at, end_reason, 'player', total_watch_seconds,
           total_rebuffer_count, quality_switches, chat_messages, reactions,
           programs_watched::jsonb, payload::jsonb
    from i
    on conflict (session_id) do update set
        ended_at = excluded.ended_at, ended_at_text = excluded.ended_at_text,
        end_received_at = excluded.end_received_at, end_reason = excluded.end_reason,
        closed_by = 'player', total_watch_seconds = excluded.total_watch_seconds,
        total_rebuffer_count = excluded.total_rebuffer_count,
        quality_switches = excluded.quality_switches,
        total_chat_messages_sent = excluded.total_chat_messages_sent,
        total_reactions_sent = excluded.total_reactions_sent,
        programs_watched = excluded.programs_watched, end_payload = excluded.end_payload,
        user_id = coalesce(s.user_id, excluded.user_id),
        last_seen_at = greatest(s.last_seen_at, excluded.last_seen_at)
    where s.closed_by is distinct from 'player'
    returning s.session_id, s.total_watch_seconds, s.end_reason
)
select session_id, total_watch_seconds, end_reason from up
union all
select s.session_id, s.total_watch_seconds, s.end_reason
from analytics_sessions s
where s.session_id in (select session_id from i)
  and s.session_id not in (select session_id from up)
"""


_KeyedOp = TypeVar("_KeyedOp", StartOp, EndOp)


def _first_per_session(ops: Iterable[_KeyedOp]) -> list[_KeyedOp]:
    """One op per session, the first submitted: an upsert may not touch a row twice."""
    seen: dict[str, _KeyedOp] = {}
    for op in ops:
        seen.setdefault(op.session_id, op)
    return sorted(seen.values(), key=lambda o: o.session_id)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def write_batch(conn: asyncpg.Connection, ops: Sequence[Op]) -> dict[str, EndResult]:
    """Write `ops` in one transaction; return the stored end of every session an EndOp named.

    Statements run in a fixed order (starts, implicit sessions, heartbeats, events, ends),
    with rows sorted by session_id, so concurrent writers lock rows in the same order.
    """
    starts = _first_per_session(o for o in ops if isinstance(o, StartOp))
    ends = _first_per_session(o for o in ops if isinstance(o, EndOp))
    beats = sorted((o for o in ops if isinstance(o, HeartbeatOp)), key=lambda o: o.session_id)
    batches = sorted(
        (o for o in ops if isinstance(o, EventsOp) and o.events), key=lambda o: o.session_id
    )
    t = STATEMENT_TIMEOUT
    async with conn.transaction():
        if starts:
            await conn.execute(
                _START_SQL,
                *_columns(
                    [
                        (
                            o.session_id,
                            o.user_id,
                            o.device_id,
                            o.platform,
                            o.app_version,
                            o.stream_id,
                            o.channel_id,
                            o.creator_id,
                            o.program_id,
                            o.started_at,
                            o.started_text,
                            o.received_at,
                            o.payload,
                        )
                        for o in starts
                    ],
                    13,
                ),
                timeout=t,
            )
        implicit: dict[str, tuple[Any, ...]] = {}
        for b in beats:
            _earliest(
                implicit,
                (
                    b.session_id,
                    b.user_id,
                    b.device_id,
                    b.stream_id,
                    b.channel_id,
                    b.creator_id,
                    b.program_id,
                    b.at,
                    b.received_at,
                ),
            )
        for e in batches:
            _earliest(
                implicit,
                (
                    e.session_id,
                    e.user_id,
                    e.device_id,
                    e.stream_id,
                    e.channel_id,
                    e.creator_id,
                    None,
                    min(ev.at for ev in e.events),
                    e.received_at,
                ),
            )
        if implicit:
            await conn.execute(
                _IMPLICIT_SQL, *_columns([implicit[k] for k in sorted(implicit)], 9), timeout=t
            )
        if beats:
            await conn.execute(
                _HEARTBEAT_SQL,
                *_columns(
                    [
                        (
                            o.session_id,
                            o.at,
                            o.text,
                            o.received_at,
                            o.user_id,
                            o.device_id,
                            o.stream_id,
                            o.channel_id,
                            o.creator_id,
                            o.program_id,
                            o.is_playing,
                            o.is_paused,
                            o.is_buffering,
                            o.quality,
                            o.bitrate_kbps,
                            o.latency_ms,
                            o.rebuffer_count,
                            o.buffer_health_seconds,
                            o.body,
                        )
                        for o in beats
                    ],
                    19,
                ),
                timeout=t,
            )
            await conn.execute(
                _REOPEN_SQL, [o.session_id for o in beats], [o.at for o in beats], timeout=t
            )
            await conn.execute(
                _TOUCH_HEARTBEAT_SQL,
                [o.session_id for o in beats],
                [o.at for o in beats],
                [o.received_at for o in beats],
                timeout=t,
            )
        if batches:
            await conn.execute(
                _EVENTS_SQL,
                *_columns(
                    [
                        (
                            ev.event_id,
                            o.session_id,
                            o.user_id,
                            o.device_id,
                            o.stream_id,
                            o.channel_id,
                            o.creator_id,
                            ev.event_type,
                            ev.at,
                            ev.timestamp,
                            o.received_at,
                            ev.metadata_json,
                        )
                        for o in batches
                        for ev in o.events
                    ],
                    12,
                ),
                timeout=t,
            )
            await conn.execute(
                _TOUCH_SEEN_SQL,
                [o.session_id for o in batches],
                [o.received_at for o in batches],
                timeout=t,
            )
        stored: dict[str, EndResult] = {}
        if ends:
            rows = await conn.fetch(
                _END_SQL,
                *_columns(
                    [
                        (
                            o.session_id,
                            o.user_id,
                            o.device_id,
                            o.stream_id,
                            o.channel_id,
                            o.creator_id,
                            o.ended_at,
                            o.text,
                            o.received_at,
                            o.end_reason,
                            o.total_watch_seconds,
                            o.total_rebuffer_count,
                            o.quality_switches,
                            o.chat_messages,
                            o.reactions,
                            o.programs_watched,
                            o.payload,
                        )
                        for o in ends
                    ],
                    17,
                ),
                timeout=t,
            )
            stored = {
                r["session_id"]: EndResult(r["total_watch_seconds"], r["end_reason"]) for r in rows
            }
    return stored


def _earliest(into: dict[str, tuple[Any, ...]], row: tuple[Any, ...]) -> None:
    """Keep, per session, the identity of its first op with the earliest client time and latest receipt."""
    found = into.get(row[0])
    if found is None:
        into[row[0]] = row
    else:
        into[row[0]] = (*found[:7], min(found[7], row[7]), max(found[8], row[8]))
