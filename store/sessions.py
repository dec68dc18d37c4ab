"""Watch sessions in PostgreSQL: who may watch, for how long, and which socket holds them.

Liveness. A session is *live* while `ended_at` is null and `expires_at`
(started_at + Settings.session_max_age, a hard lifetime) is ahead. It is
*quiet* when, for `session_ttl`, it has had no REST heartbeat (which moves
`last_seen_at` to PostgreSQL's `now()`) and no socket on a live instance: a
socket's instance is recorded in `socket_instance` when it connects
(store.sockets, batched) and cleared when it closes, and an instance proves
it lives with one row in `instances` every session_ttl/3, so open sockets cost
no per-session write. Who is *watching now* is counted by store.presence.

A session that merely went quiet is not ended: a later heartbeat or socket
brings it back, which lets a player that slept resume. It is ended (reason
"timeout") when its owner next creates a session: `create_session` sweeps the
owner's quiet sessions inside the locked transaction, so a quiet session can
never be revived past the concurrent-session limit.

Concurrency limit. `create_session` takes `pg_advisory_xact_lock` on the
user id, counts the user's live sessions and inserts in one transaction, so
the limit holds across instances and under races.

Heartbeat delta. `reported_watching` is the viewer count the session was last
told (at POST watch and at each heartbeat); `report_viewers` swaps it and
returns the previous value, so delta = now - previous. REST heartbeats
themselves, batched, are store.heartbeats.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Final, Protocol

import asyncpg
import msgspec

from protocol.values import SessionEndReason
from store.errors import LimitReached, edge

__all__ = [
    "HELD_SQL",
    "SESSION_COLUMNS",
    "ConcurrentLimitReached",
    "SessionRequest",
    "WatchSession",
    "batch_columns",
    "create_session",
    "end_session",
    "get_session",
    "live_session_count",
    "new_session_id",
    "report_viewers",
    "session_columns",
    "session_row",
    "update_quality",
    "update_session",
]

SESSION_PREFIX: Final = "sess_watch_"

SESSION_COLUMNS: Final = (
    "session_id, user_id, creator_id, channel_id, stream_id, device_type, quality, timezone,"
    " started_at, last_seen_at, expires_at, ended_at, end_reason, reported_watching,"
    " socket_instance"
)
# A session row `w` whose socket is held by an instance seen within $ttl seconds ($ttl: the
# statement's ttl parameter, spliced in by the caller).
HELD_SQL: Final = (
    "({w}.socket_instance is not null and exists (select 1 from instances i"
    " where i.instance_id = {w}.socket_instance and i.seen_at > now() - make_interval(secs => {ttl})))"
)


def session_columns(alias: str) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in SESSION_COLUMNS.split(","))


class WatchSession(msgspec.Struct, kw_only=True, frozen=True):
    """One row of watch_sessions. `ended_at` is set once and never changes afterwards."""

    session_id: str
    user_id: str
    creator_id: str
    channel_id: str
    stream_id: str
    device_type: str
    quality: str
    timezone: str
    started_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: SessionEndReason | None = None
    reported_watching: int = 0
    socket_instance: str | None = None  # the instance that took its socket last (None: none)

    def is_live(self, now: datetime) -> bool:
        """Not ended and within its hard lifetime (`now` from the caller, e.g. PostgreSQL's)."""
        return self.ended_at is None and now < self.expires_at


class ConcurrentLimitReached(LimitReached):
    """The user already has `limit` live sessions; nothing was inserted."""

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(f"user {user_id} has {limit} live sessions", "user_id")
        self.user_id: Final = user_id
        self.limit: Final = limit


_FIELDS: Final = tuple(WatchSession.__struct_fields__)


def session_row(record: asyncpg.Record) -> WatchSession:
    return WatchSession(**{name: record[name] for name in _FIELDS})


class SessionRequest(Protocol):
    """One row of a batch statement about one session (a heartbeat, a socket claim)."""

    @property
    def session_id(self) -> str: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def creator_id(self) -> str: ...


def batch_columns(
    requests: Sequence[SessionRequest], what: str
) -> tuple[list[str], list[str | None], list[str]]:
    """The unnest() columns (session, user, creator) of a one-row-per-session statement.

    Raises ValueError on a repeated session: each row locks its session once.
    """
    if len({r.session_id for r in requests}) != len(requests):
        raise ValueError(f"one {what} per session per statement")
    return (
        [r.session_id for r in requests],
        [r.user_id for r in requests],
        [r.creator_id for r in requests],
    )


def new_session_id() -> str:
    """ "sess_watch_" and 16 random hex digits: unguessable, so ids leak nothing."""
    return SESSION_PREFIX + secrets.token_hex(8)


@edge
async def get_session(pool: asyncpg.Pool, session_id: str) -> WatchSession | None:
    record = await pool.fetchrow(
        f"select {SESSION_COLUMNS} from watch_sessions where session_id = $1", session_id
    )
    return session_row(record) if record else None


@edge
async def create_session(
    pool: asyncpg.Pool,
    *,
    user_id: str,
    creator_id: str,
    channel_id: str,
    stream_id: str,
    device_type: str,
    quality: str,
    timezone: str,
    ttl: float,
    max_age: float,
    limit: int,
) -> tuple[WatchSession, list[WatchSession]]:
    """Insert a live session unless the user already has `limit` live ones.

    Returns the new session and the user's quiet sessions this call ended
    (reason "timeout"), so the caller can tell the real-time layer. Raises
    `ConcurrentLimitReached` (and changes nothing) at the limit. The per-user
    advisory lock serializes concurrent creates of one user across instances;
    it is released at commit or rollback, also when the caller is cancelled.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(hashtext($1))", user_id)
        swept = await conn.fetch(
            f"update watch_sessions set ended_at = now(), end_reason = 'timeout'"
            f" where user_id = $1 and ended_at is null and (expires_at <= now()"
            f" or (last_seen_at <= now() - make_interval(secs => $2)"
            f" and not {HELD_SQL.format(w='watch_sessions', ttl='$2')}))"
            f" returning {SESSION_COLUMNS}",
            user_id,
            ttl,
        )
        live = await conn.fetchval(
            "select count(*) from watch_sessions where user_id = $1 and ended_at is null", user_id
        )
        if live >= limit:
            raise ConcurrentLimitReached(user_id, limit)
        record = await conn.fetchrow(
            f"insert into watch_sessions (session_id, user_id, creator_id, channel_id, stream_id,"
            f" device_type, quality, timezone, expires_at)"
            f" values ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))"
            f" returning {SESSION_COLUMNS}",
            new_session_id(),
            user_id,
            creator_id,
            channel_id,
            stream_id,
            device_type,
            quality,
            timezone,
            max_age,
        )
    return session_row(record), [session_row(r) for r in swept]


async def update_session(
    pool: asyncpg.Pool, session_id: str, *, quality: str, device_type: str | None = None
) -> WatchSession | None:
    """Change quality (and device, when given) of a live session; None if unknown or not live."""
    record = await pool.fetchrow(
        f"update watch_sessions set quality = $2, device_type = coalesce($3, device_type)"
        f" where session_id = $1 and ended_at is null and expires_at > now() returning {SESSION_COLUMNS}",
        session_id,
        quality,
        device_type,
    )
    return session_row(record) if record else None


@edge
async def update_quality(pool: asyncpg.Pool, session_id: str, quality: str) -> WatchSession | None:
    """Change the quality of a live session; None if it is unknown, ended or expired."""
    return await update_session(pool, session_id, quality=quality)


@edge
async def end_session(
    pool: asyncpg.Pool, session_id: str, reason: SessionEndReason
) -> WatchSession | None:
    """End a session; idempotent: a second call returns the first `ended_at` and reason.

    None only if the session does not exist.
    """
    record = await pool.fetchrow(
        f"update watch_sessions set ended_at = coalesce(ended_at, now()),"
        f" end_reason = coalesce(end_reason, $2) where session_id = $1 returning {SESSION_COLUMNS}",
        session_id,
        reason,
    )
    return session_row(record) if record else None


@edge
async def report_viewers(pool: asyncpg.Pool, session_id: str, watching_now: int) -> int:
    """Store the count the session is being told now; return the count it was told before."""
    previous = await pool.fetchval(
        "update watch_sessions w set reported_watching = $2"
        " from (select reported_watching from watch_sessions where session_id = $1 for update) old"
        " where w.session_id = $1 returning old.reported_watching",
        session_id,
        watching_now,
    )
    return int(previous) if previous is not None else watching_now


@edge
async def live_session_count(pool: asyncpg.Pool, user_id: str) -> int:
    """The user's live sessions (not ended, within lifetime), quiet or not."""
    return int(
        await pool.fetchval(
            "select count(*) from watch_sessions"
            " where user_id = $1 and ended_at is null and expires_at > now()",
            user_id,
        )
    )


@edge
async def db_now(pool: asyncpg.Pool) -> datetime:
    """PostgreSQL's clock: the one all instances agree on for session liveness."""
    value: datetime = await pool.fetchval("select now()")
    return value
