"""Process-level lifecycle: embedded servers, migrations, the demo world, the event loop.

`run_serve` owns what outlives the application: an embedded PostgreSQL when no
DATABASE_URL is given (stopped on exit, also after SIGTERM/Ctrl-C), and the
uvloop event loop the aiohttp app runs on. It checks first what would make
it fail later (the port, then the database), so a mistake costs one line and
no PostgreSQL start; failures leave as `OperatorError` (one line, exit 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import uvloop

from server.config import Settings
from server.preflight import OperatorError, check_port_free, listen_error
from server.routes.ingest import demo_key_banner
from server.serving import run_instance
from server.workers import run_workers
from store.demo import load_demo
from store.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedValkey
from store.pg import DatabaseUnreachable, create_pool, migrate, wait_reachable

log = logging.getLogger(__name__)


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """Yield settings with a database_url, starting an embedded PostgreSQL if there is none."""
    if settings.database_url:
        yield settings
        return
    pg = _start_postgres(EmbeddedPostgres(settings.data_dir / "pgdata"))
    log.info("embedded PostgreSQL on %s (data in %s)", pg.url, pg.data_dir)
    try:
        yield dataclasses.replace(settings, database_url=pg.url)
    finally:
        log.info("stopping embedded PostgreSQL")
        pg.stop()


def _start_postgres(pg: EmbeddedPostgres) -> EmbeddedPostgres:
    try:
        return pg.start()
    except EmbeddedError as exc:
        raise OperatorError(f"embedded PostgreSQL: {exc}") from None


async def prepare(settings: Settings, *, demo: bool) -> None:
    """Wait for the database (bounded), migrate (store.pg logs each migration), load the demo."""
    assert settings.database_url
    try:
        await wait_reachable(settings.database_url, settings.database_wait)
    except DatabaseUnreachable as exc:
        raise OperatorError(str(exc)) from None
    await migrate(settings.database_url)
    if demo:
        pool = await create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            if await load_demo(pool, now=datetime.now(UTC)):
                log.info("loaded the demo world")
                print(await demo_key_banner(pool, settings.rtmp_url), flush=True)
        finally:
            await pool.close()


def run_migrate(settings: Settings) -> int:
    with database(settings) as s:
        uvloop.run(prepare(s, demo=False))
    return 0


def run_seed(settings: Settings, *, force: bool) -> int:
    async def seed(s: Settings) -> None:
        assert s.database_url
        await migrate(s.database_url)
        pool = await create_pool(s.database_url, min_size=1, max_size=2)
        try:
            loaded = await load_demo(pool, now=datetime.now(UTC), force=force)
            print("demo world loaded" if loaded else "data exists; use --force to reload")
            print(await demo_key_banner(pool, s.rtmp_url), flush=True)
        finally:
            await pool.close()

    with database(settings) as s:
        uvloop.run(seed(s))
    return 0


def run_serve(settings: Settings, *, demo: bool = True) -> int:
    check_port_free(settings.host, settings.port)  # before PostgreSQL starts
    with database(settings) as s:
        uvloop.run(prepare(s, demo=demo))
        if s.workers > 1:
            return run_workers(s)
        try:
            run_instance(s)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise
            raise listen_error(s.host, s.port, exc) from None  # taken since the check
    return 0


def run_backends(settings: Settings, *, pg_port: int, redis_port: int) -> int:
    """Embedded PostgreSQL (migrated, demo world on first start) and Valkey until SIGINT/SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for port in (pg_port, redis_port):
        check_port_free("127.0.0.1", port)
    pg = _start_postgres(EmbeddedPostgres(settings.data_dir / "pgdata", port=pg_port))
    try:
        valkey = EmbeddedValkey(port=redis_port).start()
        try:
            uvloop.run(prepare(dataclasses.replace(settings, database_url=pg.url), demo=True))
            print(f"DATABASE_URL={pg.url}\nREDIS_URL={valkey.url}", flush=True)
            try:
                stop.wait()
            except KeyboardInterrupt:
                pass
        finally:
            valkey.stop()
    finally:
        pg.stop()
    return 0
