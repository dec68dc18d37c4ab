"""Which instance holds each session's socket, in PostgreSQL, at a cost per batch, not per socket.

`SocketLedger` is one instance's view:

- `claim` (a websocket connect) checks that the session is the caller's, on
  the creator's channel and live, and records this instance as its holder.
  Claims that arrive together (a reconnect storm) share one statement: the
  first claim of a batch waits for the next event-loop turn, later ones join
  it, up to `max_batch` per statement and `max_inflight` statements at once.
- `release` (a socket closed) is queued and written with the others every
  `release_every` seconds in one statement; the session then counts as quiet
  from that moment unless a heartbeat or another socket comes.
- `alive` (every session_ttl/3) writes this instance's one `instances` row:
  while it is fresh, every session it holds is live without a write of its own.

A claim for a session whose release is still queued here cancels that
release. Statement failures reach the callers of that batch as StoreError.
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

__all__ = ["Claim", "ClaimRequest", "SocketLedger", "claim_sessions"]


class ClaimRequest(msgspec.Struct, frozen=True):
    session_id: str
    user_id: str
    creator_id: str


class Claim(msgspec.Struct, kw_only=True, frozen=True):
    """What a websocket connect found."""

    session: WatchSession | None  # None: unknown session
    touched: bool  # the caller's, on the creator's channel, live: taken for this instance
    held_by: str | None = None  # the instance that took a socket for it before, if any


_CLAIM_SQL: Final = (
    f"with req as (select * from unnest($1::text[], $2::text[], $3::text[])"
    f" as r(session_id, user_id, creator_id)),"
    # Lock the allowed rows in id order (overlapping batches cannot deadlock), then take them;
    # `held_by` is the holder the previous claim left.
    f" taken as ("
    f" update watch_sessions w set socket_instance = $4, last_seen_at = now()"
    f" from (select s.session_id, s.socket_instance as held_by from watch_sessions s"
    f" join req r on r.session_id = s.session_id"
    f" where s.user_id = r.user_id and s.creator_id = r.creator_id"
    f" and s.ended_at is null and s.expires_at > now()"
    f" order by s.session_id for update of s) prev"
    f" where w.session_id = prev.session_id returning {session_columns('w')}, prev.held_by)"
    f" select {SESSION_COLUMNS}, true as touched, held_by from taken"
    f" union all"
    f" select {session_columns('s')}, false, null from watch_sessions s"
    f" join req r on r.session_id = s.session_id"
    f" where not exists (select 1 from taken t where t.session_id = s.session_id)"
)

_RELEASE_SQL: Final = (
    "update watch_sessions set socket_instance = null, last_seen_at = now()"
    " where session_id = any($1::text[]) and socket_instance = $2 and ended_at is null"
)

_ALIVE_SQL: Final = (
    "insert into instances (instance_id) values ($1)"
    " on conflict (instance_id) do update set seen_at = now()"
)


@edge
async def claim_sessions(
    pool: asyncpg.Pool, requests: Sequence[ClaimRequest], instance_id: str
) -> dict[str, Claim]:
    """Claims of distinct sessions in one statement; the Claim of each session that exists.

    A row is taken only if it is the request's user's, on its creator's channel
    and live; refused rows are returned too, so the caller can tell why
    without a second query. Nobody else's session is ever changed.
    """
    records = await pool.fetch(_CLAIM_SQL, *batch_columns(requests, "claim"), instance_id)
    return {
        r["session_id"]: Claim(
            session=session_row(r), touched=bool(r["touched"]), held_by=r["held_by"]
        )
        for r in records
    }


class SocketLedger:
    """This instance's sockets in PostgreSQL: batched claims and releases, one liveness row."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        instance_id: str,
        *,
        max_batch: int = 512,
        max_inflight: int = 4,
        release_every: float = 0.5,
    ) -> None:
        self.pool = pool
        self.instance_id = instance_id
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.release_every = release_every
        self._queue: list[tuple[ClaimRequest, asyncio.Future[Claim]]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._armed = False
        self._releases: set[str] = set()
        self._release_timer: asyncio.TimerHandle | None = None
        self._release_task: asyncio.Task[None] | None = None
        self.batches = 0  # claim statements run, for tests and metrics

    # --- claims --------------------------------------------------------------------------

    async def claim(self, session_id: str, *, user_id: str, creator_id: str) -> Claim:
        """Claim the session's socket for this instance (see the module doc)."""
        self._releases.discard(session_id)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Claim] = loop.create_future()
        self._queue.append((ClaimRequest(session_id, user_id, creator_id), future))
        self._arm()
        return await future

    def _arm(self) -> None:
        if not self._armed and self._queue and len(self._inflight) < self.max_inflight:
            self._armed = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        self._armed = False
        while self._queue and len(self._inflight) < self.max_inflight:
            batch: dict[str, list[tuple[ClaimRequest, asyncio.Future[Claim]]]] = {}
            rest = []
            for item in self._queue:
                group = batch.get(item[0].session_id)
                if group is not None and group[0][0] != item[0]:
                    rest.append(item)  # another caller's claim of the same session: next batch
                elif group is not None:
                    group.append(item)
                elif len(batch) < self.max_batch:
                    batch[item[0].session_id] = [item]
                else:
                    rest.append(item)
            self._queue = rest
            task = asyncio.get_running_loop().create_task(self._run(batch), name="socket-claims")
            self._inflight.add(task)
            task.add_done_callback(self._done)

    async def _run(
        self, batch: dict[str, list[tuple[ClaimRequest, asyncio.Future[Claim]]]]
    ) -> None:
        try:
            found = await claim_sessions(
                self.pool, [items[0][0] for items in batch.values()], self.instance_id
            )
        except BaseException as err:
            failure = err if isinstance(err, Exception) else StoreUnavailable("claims cancelled")
            for items in batch.values():
                for _, future in items:
                    if not future.done():
                        future.set_exception(failure)
            if not isinstance(err, Exception):
                raise
            return
        self.batches += 1
        for session_id, items in batch.items():
            claim = found.get(session_id, Claim(session=None, touched=False))
            for _, future in items:
                if not future.done():
                    future.set_result(claim)
                # A second socket of the same caller in the same batch replaces the first.
                claim = Claim(
                    session=claim.session, touched=claim.touched, held_by=self.instance_id
                )

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # handed to the callers already
        self._arm()

    # --- releases and liveness -----------------------------------------------------------

    def release(self, session_id: str) -> None:
        """The session's socket here closed: record it with the next release batch."""
        self._releases.add(session_id)
        if self._release_timer is None and self._release_task is None:
            loop = asyncio.get_running_loop()
            self._release_timer = loop.call_later(self.release_every, self._start_release)

    def _start_release(self) -> None:
        self._release_timer = None
        self._release_task = asyncio.get_running_loop().create_task(
            self.flush_releases(), name="socket-releases"
        )
        self._release_task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._release_task = None
        if not task.cancelled():
            task.exception()  # logged by flush_releases' caller path; retried below
        if self._releases:
            self.release(next(iter(self._releases)))

    async def flush_releases(self) -> None:
        """Write the queued releases now (one statement); they stay queued if it fails."""
        if not self._releases:
            return
        ids = list(self._releases)
        self._releases.difference_update(ids)
        try:
            await _release(self.pool, ids, self.instance_id)
        except BaseException:
            self._releases.update(ids)
            raise

    async def alive(self) -> None:
        """This instance is alive: its held sessions are live for another session_ttl."""
        await _alive(self.pool, self.instance_id)

    async def close(self) -> None:
        """Wait for claims in flight, write the releases, and withdraw this instance's row."""
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._release_task is not None:
            await asyncio.gather(self._release_task, return_exceptions=True)
        await self.flush_releases()
        await _gone(self.pool, self.instance_id)


@edge
async def _release(pool: asyncpg.Pool, session_ids: list[str], instance_id: str) -> None:
    await pool.execute(_RELEASE_SQL, session_ids, instance_id)


@edge
async def _alive(pool: asyncpg.Pool, instance_id: str) -> None:
    await pool.execute(_ALIVE_SQL, instance_id)


@edge
async def _gone(pool: asyncpg.Pool, instance_id: str) -> None:
    await pool.execute("delete from instances where instance_id = $1", instance_id)
