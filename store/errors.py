"""The store's one error tree: driver exceptions become these at the store's edge, nowhere else.

    StoreError                 anything the store could not do (a bug: 500)
    ├── StoreUnavailable       PostgreSQL or Redis unreachable, frozen or timing out: retry (503)
    ├── Conflict               a unique key already exists (409, `field`)
    ├── NotFound               a referenced row does not exist (404, `field`)
    ├── RejectedData           the database refused a value: range, check, encoding (422, `field`)
    └── LimitReached           a counted limit is full, e.g. concurrent sessions (429)

`translate` maps one driver exception; `edge` wraps a store coroutine so every
exception that leaves it is a StoreError (CancelledError passes through). The
server's middleware holds the one table from these classes to HTTP statuses.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Final, ParamSpec, TypeVar

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
from redis.exceptions import RedisError

P = ParamSpec("P")
R = TypeVar("R")


class StoreError(Exception):
    """The store could not do what was asked; `field` names the offending input when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message: Final = message
        self.field: Final = field


class StoreUnavailable(StoreError):
    """PostgreSQL or Redis cannot answer right now (down, frozen, timing out): retry later."""


class Conflict(StoreError):
    """A row with this key already exists."""


class NotFound(StoreError):
    """A row the write refers to does not exist."""


class RejectedData(StoreError):
    """The database refused a value (out of range, failed a check, not encodable)."""


class LimitReached(StoreError):
    """A counted limit is already full; nothing was changed."""


_UNAVAILABLE: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,  # admin shutdown, statement_timeout (query canceled)
    asyncpg.InsufficientResourcesError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.TransactionRollbackError,  # serialization failure or deadlock: safe to retry
    RedisError,
    ConnectionError,
    OSError,
    TimeoutError,
)
_REJECTED: Final = (
    asyncpg.DataError,  # SQLSTATE 22: numeric out of range, invalid text, bad datetime
    asyncpg.CheckViolationError,
    asyncpg.NotNullViolationError,
    asyncpg_base.DataError,  # client side: the argument does not fit its column type
)


def translate(err: BaseException, *, field: str | None = None) -> StoreError:
    """The StoreError for a driver exception; `field` is what the caller sent the value as."""
    if isinstance(err, StoreError):
        return err
    if isinstance(err, asyncpg.UniqueViolationError):
        return Conflict(f"{field or 'key'} already exists", field)
    if isinstance(err, asyncpg.ForeignKeyViolationError):
        return NotFound("A referenced row does not exist", field)
    # The client-side DataError is an InterfaceError too: test it before "unavailable".
    if isinstance(err, _REJECTED):
        return RejectedData(f"Value cannot be stored: {_first_line(err)}", field)
    if isinstance(err, _UNAVAILABLE):
        return StoreUnavailable(f"{type(err).__name__}: {_first_line(err)}")
    return StoreError(f"{type(err).__name__}: {_first_line(err)}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def edge(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap a store coroutine: whatever it raises leaves as a StoreError; cancellation is kept."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except StoreError:
            raise
        except Exception as err:
            raise translate(err) from err

    return wrapper
