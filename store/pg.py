"""PostgreSQL pool and the schema migration runner.

Migrations are the ordered `NNNN_name.sql` files in `store/migrations/`. Each
runs in its own transaction, under a session advisory lock, so several
instances starting at once apply each migration exactly once.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Final

import asyncpg

log = logging.getLogger(__name__)

MIGRATION_LOCK: Final = 0x64726F70  # "drop": the advisory lock key held while migrating
# Every wait on PostgreSQL is bounded: a frozen server fails a statement within
# COMMAND_TIMEOUT (client side) or STATEMENT_TIMEOUT (server side), a new connection within
# CONNECT_TIMEOUT. Requests add their own deadline on top (server.middleware).
CONNECT_TIMEOUT: Final = 5.0
COMMAND_TIMEOUT: Final = 5.0
STATEMENT_TIMEOUT_MS: Final = 10_000


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
