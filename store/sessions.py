"""Watch sessions in PostgreSQL: the single source of truth for who is watching.

Liveness. A session is *live* while `ended_at` is null and `expires_at`
(started_at + Settings.session_max_age, a hard lifetime) is ahead; it *counts
as watching now* while it is live and `last_seen_at` is within `session_ttl`.
Every liveness signal (an open websocket, batched by `touch_sessions`; a REST
heartbeat) moves `last_seen_at` to PostgreSQL's `now()`, so all instances
share one clock. A killed instance stops touching and its sessions drop out of
the counts within `session_ttl`.

A session that merely went quiet (missed liveness) is not ended: a later
touch brings it back, which lets a player that slept resume. It is ended
(reason "timeout") when its owner next creates a session: `create_session`
sweeps the owner's quiet sessions inside the locked transaction, so a quiet
session can never be revived past the concurrent-session limit.

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
from typing import Final

import asyncpg
import msgspec

from protocol.values import SessionEndReason
from store.errors import LimitReached, edge

__all__ = [
    "SESSION_COLUMNS",
    "Claim",
    "ConcurrentLimitReached",
    "WatchSession",
    "claim_session",
    "create_session",
    "end_session",
    "get_session",
    "live_session_count",
    "new_session_id",
    "report_viewers",
    "session_columns",
    "session_row",
    "touch_sessions",
    "update_quality",
    "update_session",
]

SESSION_PREFIX: Final = "sess_watch_"

SESSION_COLUMNS: Final = (
    "session_id, user_id, creator_id, channel_id, stream_id, device_type, quality, timezone,"
    " started_at, last_seen_at, expires_at, ended_at, end_reason, reported_watching"
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
            f" where user_id = $1 and ended_at is null"
            f" and (last_seen_at <= now() - make_interval(secs => $2) or expires_at <= now())"
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


@edge
async def touch_sessions(pool: asyncpg.Pool, session_ids: Sequence[str]) -> list[str]:
    """Mark sessions alive now, in one statement; return the ids that are still live.

    Ended sessions and those past `expires_at` are not touched and not
    returned: the caller should close them. Rows are locked in id order, so
    two overlapping batches from different instances cannot deadlock.
    """
    if not session_ids:
        return []
    records = await pool.fetch(
        "with target as ("
        " select session_id from watch_sessions"
        " where session_id = any($1::text[]) and ended_at is null and expires_at > now()"
        " order by session_id for update)"
        " update watch_sessions w set last_seen_at = now() from target t"
        " where w.session_id = t.session_id returning w.session_id",
        list(session_ids),
    )
    return [r["session_id"] for r in records]


_CLAIM_SQL: Final = (
    # Lock, then touch and take the socket (so `held_by` is what the last claim left).
    f"with touched as ("
    f" update watch_sessions w set last_seen_at = now(), socket_instance = $4"
    f" from (select session_id, socket_instance from watch_sessions"
    f" where session_id = $1 and user_id = $2 and creator_id = $3"
    f" and ended_at is null and expires_at > now() for update) prev"
    f" where w.session_id = prev.session_id returning {session_columns('w')}, prev.socket_instance)"
    f" select {SESSION_COLUMNS}, true as touched, socket_instance as held_by from touched"
    f" union all"
    f" select {SESSION_COLUMNS}, false, null from watch_sessions"
    f" where session_id = $1 and not exists (select 1 from touched)"
)


class Claim(msgspec.Struct, kw_only=True, frozen=True):
    """What a websocket connect found (see `claim_session`)."""

    session: WatchSession | None  # None: unknown session
    touched: bool  # the caller's, on the creator's channel, live: touched and taken
    held_by: str | None = None  # the instance that took a socket for it before, if any


@edge
async def claim_session(
    pool: asyncpg.Pool, session_id: str, *, user_id: str, creator_id: str, instance_id: str
) -> Claim:
    """Touch the session and take its socket for `instance_id`, if it is `user_id`'s, on
    `creator_id`'s channel and live; one statement.

    Returns the row either way, so a caller that was refused can tell why
    without a second query, and which instance took a socket for the session
    before (None: never), so a replaced socket elsewhere is told only when there
    can be one. Nobody else's session is ever touched.
    """
    record = await pool.fetchrow(_CLAIM_SQL, session_id, user_id, creator_id, instance_id)
    if record is None:
        return Claim(session=None, touched=False)
    return Claim(
        session=session_row(record), touched=bool(record["touched"]), held_by=record["held_by"]
    )


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
