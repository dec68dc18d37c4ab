"""Live analytics storage: a group-committing writer, the session sweeper and the QoE summary.

Durable before acknowledged. Requests hand their rows to the one
`AnalyticsWriter` of the process and await a future that resolves only after
the transaction holding those rows has committed. The writer gathers what
concurrent requests submit, flushes when `max_batch_rows` rows are pending or
`flush_interval` after the first one arrived, and writes the whole batch in
ONE transaction, one set-based statement per kind (`unnest` of arrays, with
`ON CONFLICT`). If the commit fails, every waiting request gets
`StoreUnavailable` (a 503): nothing is acknowledged that was not stored. A
connection lost during COMMIT is reported as a failure although the commit may
have happened; retries are safe because every write is idempotent:

- session start: key `session_id`; the first start wins (a re-sent start changes nothing),
  except that a start fills in a session created implicitly before it;
- heartbeat: key (`session_id`, parsed client `timestamp`);
- event: key `event_id`, globally; an id already stored counts as accepted (a retry);
- session end: key `session_id`; the first end *by the player* wins and later ends get
  its summary back; a player's end replaces a sweeper's timeout close.

Lifecycle. A heartbeat, events or an end for a session the server never saw
start (the start was lost, or the player kept its session across a server
restart) create the session implicitly from the body's ids, starting at the
earliest client timestamp seen. A heartbeat after the player ended the session
is stored but changes nothing else. A heartbeat newer than a sweeper's close
reopens the session (the silence was a gap, not an exit). The sweeper closes
sessions silent (server clock, any message) for `timeout` seconds with
`end_reason = timeout`, ending them at their last heartbeat (client clock),
or at their start if they never sent one; their watch time is that span.

A batch that fails on bad data (e.g. a NUL character PostgreSQL refuses) is
retried one request per transaction, so one bad request cannot fail its
neighbours; that request gets `RejectedData` (a 422).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import asyncpg
import msgspec

from protocol.analytics import (
    MAX_WATCH_SECONDS,
    EventsBatch,
    Heartbeat,
    LiveEvent,
    MinuteTotals,
    SessionEnd,
    SessionStart,
    StreamTotals,
)
from store.errors import RejectedData, StoreError, StoreUnavailable, edge, translate

log = logging.getLogger(__name__)

__all__ = [
    "AnalyticsWriter",
    "EndOp",
    "EndResult",
    "EventsOp",
    "HeartbeatOp",
    "SessionOwner",
    "StartOp",
    "session_owner",
    "stream_creator",
    "stream_minutes",
    "stream_totals",
    "sweep",
]

ACQUIRE_TIMEOUT: Final = 5.0
STATEMENT_TIMEOUT: Final = 10.0
MAX_BACKOFF: Final = 0.5
COMMIT_TRIES: Final = 3
# Lost races between writers on several instances: retried at once, the batch is idempotent.
_RETRY_AT_ONCE: Final = (asyncpg.TransactionRollbackError,)
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
        body: Heartbeat,
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
    end_reason: str
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
    end_reason: str


Op = StartOp | HeartbeatOp | EndOp | EventsOp

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


async def _write_batch(conn: asyncpg.Connection, ops: Sequence[Op]) -> dict[str, EndResult]:
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


@dataclass(eq=False, slots=True)
class _Pending:
    op: Op
    future: asyncio.Future[EndResult | None]


class AnalyticsWriter:
    """The process's single analytics writer: group commit with a future per request.

    `submit` returns once the op's transaction committed, or raises
    `StoreUnavailable` (nothing acknowledged; retry) or `RejectedData`. Pending
    rows are capped at `max_pending_rows`: past it `submit` fails at once with
    `StoreUnavailable` instead of queueing without bound. `run` never dies of a
    database error: it logs, fails that batch's futures, backs off (capped) and
    goes on with the next batch. Counters `commits`, `failed_batches` and
    `ops_committed` are for tests and metrics.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch_rows: int = 2000,
        flush_interval: float = 0.003,
        max_pending_rows: int = 100_000,
    ) -> None:
        self._pool = pool
        self.max_batch_rows = max_batch_rows
        self.flush_interval = flush_interval
        self.max_pending_rows = max_pending_rows
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._backoff = 0.0
        self.commits = 0
        self.failed_batches = 0
        self.ops_committed = 0

    async def submit(self, op: Op) -> EndResult | None:
        """Queue `op` and wait for its batch's commit; an EndOp returns the stored end."""
        if self._closing:
            raise StoreUnavailable("analytics writer is shutting down")
        if self._pending_rows + op.rows > self.max_pending_rows:
            raise StoreUnavailable("analytics writer is over capacity")
        future: asyncio.Future[EndResult | None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(op, future))
        self._pending_rows += op.rows
        self._wake.set()
        if self._pending_rows >= self.max_batch_rows:
            self._full.set()
        # If the waiting request is cancelled (client gone), the op stays in its batch:
        # the write goes ahead and `_resolve` skips the cancelled future.
        return await future

    async def run(self) -> None:
        """Flush batches until `close`; on cancel, fail whatever is still waiting."""
        while True:
            try:
                await self._wake.wait()
            except asyncio.CancelledError:
                self._fail(self._drain(), StoreUnavailable("analytics writer stopped"))
                raise
            if not self._pending:
                self._wake.clear()
                if self._closing:
                    return
                continue
            batch: list[_Pending] = []
            try:
                if self._pending_rows < self.max_batch_rows and not self._closing:
                    # Let concurrent requests join this batch: the "group" in group commit.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.flush_interval):
                            await self._full.wait()
                    # Python 3.11 can turn a cancel racing the timeout into TimeoutError: keep it.
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise asyncio.CancelledError
                batch = self._take()
                await self._commit(batch)
                if self._backoff:
                    await asyncio.sleep(self._backoff)
            except asyncio.CancelledError:
                self._fail([*batch, *self._drain()], StoreUnavailable("analytics writer stopped"))
                raise

    async def close(self, task: asyncio.Task[None], timeout: float = 10.0) -> None:
        """Stop taking ops, flush what is pending, stop; cancel (failing the rest) after `timeout`."""
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _take(self) -> list[_Pending]:
        """The oldest pending ops, up to `max_batch_rows` rows (at least one op)."""
        rows = cut = 0
        while cut < len(self._pending) and rows < self.max_batch_rows:
            rows += self._pending[cut].op.rows
            cut += 1
        batch, self._pending = self._pending[:cut], self._pending[cut:]
        self._pending_rows -= rows
        if self._pending_rows < self.max_batch_rows:
            self._full.clear()
        if not self._pending:
            self._wake.clear()
        return batch

    def _drain(self) -> list[_Pending]:
        batch, self._pending, self._pending_rows = self._pending, [], 0
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        ops = [p.op for p in batch]
        error: BaseException | None = None
        for attempt in range(COMMIT_TRIES):
            try:
                stored = await self._transaction(ops)
            except _RETRY_AT_ONCE as err:
                error = err
            except Exception as err:
                failure = translate(err)
                if isinstance(failure, StoreUnavailable):
                    error = err
                    if attempt > 0:
                        # One quick retry only: the first failure is often a pooled connection
                        # the database dropped; a second means the database is really away.
                        break
                    continue
                if isinstance(failure, RejectedData) or isinstance(err, asyncpg.PostgresError):
                    log.warning(
                        "analytics batch refused (%r); writing its requests one by one", err
                    )
                    await self._commit_each(batch)
                    return
                log.exception("analytics batch failed")
                self.failed_batches += 1
                self._fail(batch, failure)
                return
            else:
                self._resolve(batch, stored)
                self._backoff = 0.0
                return
        self.failed_batches += 1
        self._backoff = min(MAX_BACKOFF, max(0.05, self._backoff * 2))
        log.warning("analytics batch of %d requests not stored: %r", len(batch), error)
        self._fail(batch, StoreUnavailable(f"analytics storage unavailable: {error!r}"))

    async def _commit_each(self, batch: list[_Pending]) -> None:
        for item in batch:
            try:
                stored = await self._transaction([item.op])
            except Exception as err:
                failure = translate(err, field="body")
                if type(failure) is StoreError:
                    log.exception("analytics write failed")
                self._fail([item], failure)
            else:
                self._resolve([item], stored)

    async def _transaction(self, ops: Sequence[Op]) -> dict[str, EndResult]:
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            return await _write_batch(conn, ops)

    def _resolve(self, batch: list[_Pending], stored: dict[str, EndResult]) -> None:
        self.commits += 1
        self.ops_committed += len(batch)
        for item in batch:
            if item.future.done():
                continue
            if isinstance(item.op, EndOp):
                end = stored.get(item.op.session_id)
                if end is None:  # cannot happen: the end statement answers every session it got
                    item.future.set_exception(RuntimeError("session end not returned"))
                    item.future.exception()
                else:
                    item.future.set_result(end)
            else:
                item.future.set_result(None)

    @staticmethod
    def _fail(batch: Iterable[_Pending], err: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(err)
                # Mark retrieved: a request that went away must not leave an unread exception.
                item.future.exception()


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
