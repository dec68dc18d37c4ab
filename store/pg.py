"""PostgreSQL pool and the schema migration runner.

Migrations are the ordered `NNNN_name.sql` files in `store/migrations/`. Each
runs in its own transaction, under a session advisory lock, so several
instances starting at once apply each migration exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from importlib import resources
from typing import Final
from urllib.parse import parse_qs, urlsplit

import asyncpg

from protocol.backoff import Backoff

log = logging.getLogger(__name__)

MIGRATION_LOCK: Final = 0x64726F70  # "drop": the advisory lock key held while migrating
# Every wait on PostgreSQL is bounded: a frozen server fails a statement within
# COMMAND_TIMEOUT (client side) or STATEMENT_TIMEOUT (server side), a new connection within
# CONNECT_TIMEOUT. Requests add their own deadline on top (server.middleware).
CONNECT_TIMEOUT: Final = 5.0
COMMAND_TIMEOUT: Final = 5.0
STATEMENT_TIMEOUT_MS: Final = 10_000


class DatabaseUnreachable(RuntimeError):
    """The database refused us at start-up; the message names host:port and the reason."""


def where(dsn: str) -> str:
    """host:port/dbname of a DSN, without user or password, for messages."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = parts.hostname or query.get("host", ["localhost"])[0]
    try:
        port = parts.port or int(query.get("port", ["5432"])[0])
    except ValueError:
        port = 5432
    return f"{host}:{port}{parts.path or '/postgres'}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    return str(exc) or type(exc).__name__


async def wait_reachable(dsn: str, timeout: float) -> None:
    """Connect once, retrying with back-off for up to `timeout` seconds while nothing answers.

    A server that answers but refuses us (wrong password, no such database) fails at once:
    waiting does not fix that.
    """
    deadline = time.monotonic() + timeout
    backoff = Backoff(0.25, 2.0)
    attempts = 0
    while True:
        attempts += 1
        left = deadline - time.monotonic()
        try:
            conn = await asyncpg.connect(dsn, timeout=max(0.5, min(CONNECT_TIMEOUT, left)))
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatabaseUnreachable(
                    f"database {where(dsn)} unreachable for {timeout:g}s ({attempts} attempts): "
                    f"{_reason(exc)}; check DATABASE_URL / --database-url and that PostgreSQL runs"
                ) from None
            if attempts == 1:
                log.warning("database %s: %s; retrying for %.0fs", where(dsn), _reason(exc), left)
            await asyncio.sleep(min(backoff.next(), left))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise DatabaseUnreachable(f"database {where(dsn)}: {exc}") from None
        else:
            await conn.close()
            return


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release RESET ALL / UNLISTEN round trip.

    Safe because no query of ours leaves session state behind: we never SET,
    LISTEN or take session-level advisory locks on pooled connections (only
    transaction-scoped ones, released at commit). The migration runner, which
    does take a session lock, uses its own connection.
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_no_reset,
        timeout=CONNECT_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
        server_settings={
            "timezone": "UTC",
            "application_name": "droptv-live",
            "statement_timeout": str(STATEMENT_TIMEOUT_MS),
        },
    )
    assert pool is not None
    return pool


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) in order; version is the numeric prefix of the file name."""
    found = []
    for entry in resources.files("store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; return the names applied. Safe to run concurrently."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("select pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                "create table if not exists schema_migrations ("
                " version int primary key, name text not null,"
                " applied_at timestamptz not null default now())"
            )
            done = {r["version"] for r in await conn.fetch("select version from schema_migrations")}
            for version, name, sql in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "insert into schema_migrations(version, name) values($1, $2)", version, name
                    )
                log.info("applied migration %s", name)
                applied.append(name)
        finally:
            await conn.execute("select pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied
