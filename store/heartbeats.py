"""REST heartbeats of watch sessions (endpoint 36), batched: one statement per batch.

A heartbeat moves the session's `last_seen_at` and swaps `reported_watching`
(the viewer count it was last told) for the current count, so the handler
can answer with the delta. `HeartbeatBatcher` runs concurrent heartbeats of
many sessions together (group commit); `beat_session` runs one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import asyncpg
import msgspec

from store.errors import StoreUnavailable, edge
from store.sessions import (
    SESSION_COLUMNS,
    WatchSession,
    batch_columns,
    session_columns,
    session_row,
)

__all__ = ["Beat", "BeatRequest", "HeartbeatBatcher", "beat_session", "beat_sessions"]


class Beat(msgspec.Struct, kw_only=True, frozen=True):
    """What one REST heartbeat found (see `beat_session`)."""

    session: WatchSession  # the row as before the heartbeat
    touched: bool  # it was the caller's, on the creator's channel, live: touched and told
    previous: int  # the count it had been told before (`reported_watching`)


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
    f" where w.session_id = cur.session_id returning {session_columns('w')}, cur.previous)"
    f" select {SESSION_COLUMNS}, true as touched, previous from touched"
    f" union all"
    f" select {session_columns('s')}, false, s.reported_watching from watch_sessions s"
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
    records = await pool.fetch(
        _BEAT_SQL, *batch_columns(requests, "heartbeat"), [r.watching_now for r in requests]
    )
    return {
        record["session_id"]: Beat(
            session=session_row(record),
            touched=bool(record["touched"]),
            previous=int(record["previous"]),
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
