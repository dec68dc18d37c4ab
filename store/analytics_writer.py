"""The analytics writer: group commit of ingest requests, each acknowledged after its commit.

Durable before acknowledged. Requests hand their rows to the one
`AnalyticsWriter` of the process and await a future that resolves only after
the transaction holding those rows has committed. The writer gathers what
concurrent requests submit, flushes when `max_batch_rows` rows are pending or
`flush_interval` after the first one arrived, and writes the whole batch in
ONE transaction, one set-based statement per kind (`unnest` of arrays, with
`ON CONFLICT`). If the commit fails, every waiting request gets
`StoreUnavailable` (a 503): nothing is acknowledged that was not stored. A
connection lost during COMMIT is reported as a failure although the commit may
have happened; retries are safe because every write is idempotent (the keys are
listed in store.analytics_ops).

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
from typing import Final

import asyncpg

from store.analytics_batch import write_batch
from store.analytics_ops import EndOp, EndResult, Op
from store.errors import RejectedData, StoreError, StoreUnavailable, translate

log = logging.getLogger(__name__)

__all__ = ["AnalyticsWriter"]

ACQUIRE_TIMEOUT: Final = 5.0
MAX_BACKOFF: Final = 0.5
COMMIT_TRIES: Final = 3
# Lost races between writers on several instances: retried at once, the batch is idempotent.
_RETRY_AT_ONCE: Final = (asyncpg.TransactionRollbackError,)


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
            return await write_batch(conn, ops)

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
