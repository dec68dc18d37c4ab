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
returns the previous value, so delta = now - previous.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import asyncpg
import msgspec

from store.errors import LimitReached, StoreUnavailable, edge

__all__ = [
    "Beat",
    "BeatRequest",
    "Claim",
    "ConcurrentLimitReached",
    "HeartbeatBatcher",
    "WatchSession",
    "beat_session",
    "beat_sessions",
    "claim_session",
    "create_session",
    "end_session",
    "get_session",
    "live_session_count",
    "new_session_id",
    "report_viewers",
    "touch_sessions",
    "update_quality",
    "update_session",
]

SESSION_PREFIX: Final = "sess_watch_"

_COLUMNS: Final = (
    "session_id, user_id, creator_id, channel_id, stream_id, device_type, quality, timezone,"
    " started_at, last_seen_at, expires_at, ended_at, end_reason, reported_watching"
)


def _cols(alias: str) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in _COLUMNS.split(","))


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
    end_reason: str | None = None
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


class Beat(msgspec.Struct, kw_only=True, frozen=True):
    """What one REST heartbeat found (see `beat_session`)."""

    session: WatchSession  # the row as before the heartbeat
    touched: bool  # it was the caller's, on the creator's channel, live: touched and told
    previous: int  # the count it had been told before (`reported_watching`)


_FIELDS: Final = tuple(WatchSession.__struct_fields__)


def _row(record: asyncpg.Record) -> WatchSession:
    return WatchSession(**{name: record[name] for name in _FIELDS})


def new_session_id() -> str:
    """ "sess_watch_" and 16 random hex digits: unguessable, so ids leak nothing."""
    return SESSION_PREFIX + secrets.token_hex(8)


@edge
async def get_session(pool: asyncpg.Pool, session_id: str) -> WatchSession | None:
    record = await pool.fetchrow(
        f"select {_COLUMNS} from watch_sessions where session_id = $1", session_id
    )
    return _row(record) if record else None


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
            f" returning {_COLUMNS}",
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
            f" returning {_COLUMNS}",
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
    return _row(record), [_row(r) for r in swept]


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
    f" where w.session_id = prev.session_id returning {_cols('w')}, prev.socket_instance)"
    f" select {_COLUMNS}, true as touched, socket_instance as held_by from touched"
    f" union all"
    f" select {_COLUMNS}, false, null from watch_sessions"
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
    return Claim(session=_row(record), touched=bool(record["touched"]), held_by=record["held_by"])


_BEAT_SQL: Final = (
    f"with req as (select * from unnest($1::text[], $2::text[], $3::text[], $4::int[])"
    f" as r(session_id, user_id, creator_id, watching_now)),"
    # Lock each allowed row, then update it (the lock comes first row by row, in id order,
    # so overlapping batches cannot deadlock); `previous` is read under the lock.
    f" touched as ("
    f" update watch_sessions w set last_seen_at = now(), reported_watching = cur.watching_now"
    f" from (select s.session_id, s.reported_watching as previous, r.watching_now"
    f" from watch_sessions s join req r on r.session_id = s.session_id"
    f" where s.creator_id = r.creator_id and (r.user_id is null or s.user_id = r.user_id)"
    f" and s.ended_at is null and s.expires_at > now()"
    f" order by s.session_id for update of s) cur"
    f" where w.session_id = cur.session_id returning {_cols('w')}, cur.previous)"
    f" select {_COLUMNS}, true as touched, previous from touched"
    f" union all"
    f" select {_cols('s')}, false, s.reported_watching from watch_sessions s"
    f" join req r on r.session_id = s.session_id"
    f" where not exists (select 1 from touched t where t.session_id = s.session_id)"
)


class BeatRequest(msgspec.Struct, frozen=True):
    """One REST heartbeat: the session, the caller (None: an admin), the path's creator and
    the count to tell the session."""

    session_id: str
    user_id: str | None
    creator_id: str
    watching_now: int


@edge
async def beat_sessions(pool: asyncpg.Pool, requests: Sequence[BeatRequest]) -> dict[str, Beat]:
    """Heartbeats of distinct sessions in one statement; the Beat of each that exists, by id.

    A session is touched and its `reported_watching` swapped for the request's
    `watching_now` only if it is on the request's creator's channel, live, and
    the request's user's (None: an admin, any user). Its row is locked first,
    so concurrent heartbeats of one session (other batches, other instances)
    each get the count the other told. Raises ValueError on a repeated session id.
    """
    if len({r.session_id for r in requests}) != len(requests):
        raise ValueError("one heartbeat per session per statement")
    records = await pool.fetch(
        _BEAT_SQL,
        [r.session_id for r in requests],
        [r.user_id for r in requests],
        [r.creator_id for r in requests],
        [r.watching_now for r in requests],
    )
    return {
        record["session_id"]: Beat(
            session=_row(record), touched=bool(record["touched"]), previous=int(record["previous"])
        )
        for record in records
    }


@edge
async def beat_session(
    pool: asyncpg.Pool, session_id: str, *, user_id: str | None, creator_id: str, watching_now: int
) -> Beat | None:
    """One heartbeat (see `beat_sessions`); None if the session does not exist."""
    found = await beat_sessions(pool, [BeatRequest(session_id, user_id, creator_id, watching_now)])
    return found.get(session_id)


class HeartbeatBatcher:
    """Runs concurrent heartbeats together: one statement per batch (group commit).

    Requests that arrive while up to `max_inflight` batches are running, or in
    the same event-loop turn, go out together in the next one. Several requests
    for one session with the same caller and creator (a player retrying, a load
    test) share one row of the statement and get what running them one after
    the other would give: the first is told the stored previous count, each
    later one the count the one before it told. A request for a session already
    in the batch, or in a batch still running, under another caller waits until
    that batch is done, so one session's heartbeats run in arrival order. A failed
    statement fails every request of its batch with the same error. A request
    whose caller goes away is still executed with its batch.
    """

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 256, max_inflight: int = 4) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._queue: list[tuple[BeatRequest, asyncio.Future[Beat | None]]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy: set[str] = set()  # sessions of the batches in flight
        self._kick_armed = False
        self.batches = 0  # statements run, for tests and metrics
        self.requests = 0

    async def beat(self, request: BeatRequest) -> Beat | None:
        """The Beat of `request`'s session, None if it does not exist."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Beat | None] = loop.create_future()
        self._queue.append((request, future))
        if not self._kick_armed and len(self._inflight) < self.max_inflight:
            self._kick_armed = True
            loop.call_soon(self._kick)
        # A caller that goes away cancels only its future: the request stays in its batch.
        return await future

    def _kick(self) -> None:
        self._kick_armed = False
        while self._queue and len(self._inflight) < self.max_inflight:
            batch = self._take()
            if not batch:
                break  # all that is queued waits for its session's batch in flight; _done kicks again
            self._busy.update(session_id for session_id, _, _ in batch)
            task = asyncio.get_running_loop().create_task(self._run(batch), name="heartbeats")
            self._inflight.add(task)
            task.add_done_callback(self._done)

    def _take(
        self,
    ) -> dict[tuple[str, str | None, str], list[tuple[BeatRequest, asyncio.Future[Beat | None]]]]:
        """Up to max_batch sessions from the queue, grouped by (session, caller, creator)."""
        groups: dict[
            tuple[str, str | None, str], list[tuple[BeatRequest, asyncio.Future[Beat | None]]]
        ] = {}
        sessions: set[str] = set()
        rest = []
        for item in self._queue:
            req = item[0]
            key = (req.session_id, req.user_id, req.creator_id)
            group = groups.get(key)
            if group is not None:
                group.append(item)
            elif (
                req.session_id in sessions
                or req.session_id in self._busy
                or len(groups) >= self.max_batch
            ):
                rest.append(item)
            else:
                groups[key] = [item]
                sessions.add(req.session_id)
        self._queue = rest
        return groups

    async def _run(
        self,
        groups: dict[
            tuple[str, str | None, str], list[tuple[BeatRequest, asyncio.Future[Beat | None]]]
        ],
    ) -> None:
        # The row of a group tells the last request's count; see the class doc for the others.
        rows = [items[-1][0] for items in groups.values()]
        try:
            found = await beat_sessions(self.pool, rows)
        except asyncio.CancelledError:
            self._fail(groups, StoreUnavailable("heartbeats cancelled"))
            raise
        except Exception as err:  # noqa: BLE001 - handed to the requests, who map it to a status
            self._fail(groups, err)
            return
        finally:
            self._busy.difference_update(session_id for session_id, _, _ in groups)
        self.batches += 1
        for (session_id, _, _), items in groups.items():
            beat = found.get(session_id)
            for req, future in items:
                self.requests += 1
                if not future.done():
                    future.set_result(beat)
                if beat is not None and beat.touched:
                    beat = Beat(session=beat.session, touched=True, previous=req.watching_now)

    @staticmethod
    def _fail(
        groups: dict[
            tuple[str, str | None, str], list[tuple[BeatRequest, asyncio.Future[Beat | None]]]
        ],
        err: Exception,
    ) -> None:
        for items in groups.values():
            for _, future in items:
                if not future.done():
                    future.set_exception(err)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # already handed to the requests
        if self._queue and not self._kick_armed:
            self._kick_armed = True
            asyncio.get_running_loop().call_soon(self._kick)

    async def close(self) -> None:
        """Wait for the batches in flight; requests still queued fail."""
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        for _, future in self._queue:
            if not future.done():
                future.set_exception(StoreUnavailable("heartbeats stopped"))
        self._queue.clear()


@edge
async def update_session(
    pool: asyncpg.Pool, session_id: str, *, quality: str, device_type: str | None = None
) -> WatchSession | None:
    """Change quality (and device, when given) of a live session; None if unknown or not live."""
    record = await pool.fetchrow(
        f"update watch_sessions set quality = $2, device_type = coalesce($3, device_type)"
        f" where session_id = $1 and ended_at is null and expires_at > now() returning {_COLUMNS}",
        session_id,
        quality,
        device_type,
    )
    return _row(record) if record else None


@edge
async def update_quality(pool: asyncpg.Pool, session_id: str, quality: str) -> WatchSession | None:
    """Change the quality of a live session; None if it is unknown, ended or expired."""
    return await update_session(pool, session_id, quality=quality)


@edge
async def end_session(pool: asyncpg.Pool, session_id: str, reason: str) -> WatchSession | None:
    """End a session; idempotent: a second call returns the first `ended_at` and reason.

    None only if the session does not exist.
    """
    record = await pool.fetchrow(
        f"update watch_sessions set ended_at = coalesce(ended_at, now()),"
        f" end_reason = coalesce(end_reason, $2) where session_id = $1 returning {_COLUMNS}",
        session_id,
        reason,
    )
    return _row(record) if record else None


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
