"""Real backends for every test: PostgreSQL and Valkey on free loopback ports.

Session fixtures start the servers once; each test gets its own database
(cloned from a migrated template) and its own Redis key prefix, so tests do
not see each other's data. Factory fixtures stop what they start, and
`loop_hygiene` fails any test that leaves a task running or an exception
unretrieved on the (session-wide) event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.auth import mint_bearer
from server.config import Settings
from store.embedded import EmbeddedPostgres, EmbeddedValkey, free_port
from store.pg import migrate

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-" + uuid.uuid4().hex
_db_counter = itertools.count()
# How long a task created by a test may take to finish after the test's own teardown.
TASK_GRACE: Final = 1.0


def _describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    where = getattr(coro, "__qualname__", repr(coro))
    return f"{task.get_name()} ({where})"


@pytest.fixture(autouse=True)
async def loop_hygiene() -> AsyncIterator[None]:
    """Fail the test on an unhandled loop exception or a task it left pending.

    The loop is shared by the whole session, so only tasks created after this
    fixture's setup count (session fixtures' long-lived tasks already exist),
    and each test's leftovers are cancelled here so they cannot blame a later
    test. Being autouse and function-scoped, this tears down after the test's
    other function fixtures (clients, apps, servers), so what they close in
    their teardown is not a leak.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    errors: list[dict[str, Any]] = []

    def record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        errors.append(context)
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(record)
    before = asyncio.all_tasks()
    try:
        yield
        me = asyncio.current_task()
        pending = {t for t in asyncio.all_tasks() - before if t is not me and not t.done()}
        if pending:
            # Tasks that are already finishing (a close handshake, a cancelled reader) get a moment.
            await asyncio.wait(pending, timeout=TASK_GRACE)
        leaked = sorted(_describe(t) for t in pending if not t.done())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=TASK_GRACE)
        # "Task exception was never retrieved" is reported when the task is collected.
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    problems = [f"task left pending: {name}" for name in leaked]
    problems += [
        f"unhandled loop exception: {ctx.get('message')} {ctx.get('exception')!r}" for ctx in errors
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    with tempfile.TemporaryDirectory(prefix="droptv-pg-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data", fsync=False).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
async def pg_template(pg: EmbeddedPostgres) -> str:
    """A migrated database that per-test databases are cloned from (fast: a file copy)."""
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute("create database droptv_template")
    finally:
        await conn.close()
    url = pg.url.rsplit("/", 1)[0] + "/droptv_template"
    await migrate(url)
    return "droptv_template"


@pytest.fixture
async def database_url(pg: EmbeddedPostgres, pg_template: str) -> AsyncIterator[str]:
    name = f"t_{os.getpid()}_{next(_db_counter)}"
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute(f"create database {name} template {pg_template}")
    finally:
        await conn.close()
    yield pg.url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute(f"drop database if exists {name} with (force)")
    finally:
        await conn.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's database, for arranging data and checking what was stored."""
    from store.pg import create_pool

    pool = await create_pool(database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def demo_db(db: asyncpg.Pool) -> asyncpg.Pool:
    """This test's database with the demo world loaded around the current time."""
    from store.demo import load_demo

    assert await load_demo(db, now=datetime.now(UTC))
    return db


@pytest.fixture(scope="session")
def valkey() -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings for an in-process app on this test's database, no Redis."""
    return Settings(
        database_url=database_url,
        jwt_secret=TEST_SECRET,
        host="127.0.0.1",
        port=0,
        instance_id="test-" + uuid.uuid4().hex[:6],
    )


AppClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(settings: Settings) -> AsyncIterator[AppClientFactory]:
    """Start the real app in-process on a loopback port; `**overrides` change Settings."""
    clients: list[TestClient[Any, Any]] = []

    async def factory(**overrides: Any) -> TestClient[Any, Any]:
        app = create_app(dataclasses.replace(settings, **overrides))
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def client(make_client: AppClientFactory, demo_db: asyncpg.Pool) -> TestClient[Any, Any]:
    """The app on a database holding the demo world."""
    return await make_client()


def token(user: str = "user_123", *, admin: bool = False, ttl: float = 3600.0) -> str:
    return mint_bearer(TEST_SECRET, user, admin=admin, ttl=ttl)


def auth(user: str = "user_123", *, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, admin=admin)}"}


@dataclasses.dataclass
class ServerProcess:
    """One `droptv-live serve` instance in its own process, as an operator would run it."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """kill -9: no shutdown hooks run, as in a crash."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


ServerFactory = Callable[..., Awaitable[ServerProcess]]


async def wait_http(
    url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


def spawn_logged(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a child process whose stdout and stderr go to `log_path` (a quick, blocking call)."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
async def start_server(database_url: str, tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start real server processes on this test's database; `env` adds DROPTV_* settings."""
    started: list[ServerProcess] = []

    async def factory(
        *,
        redis_url: str | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> ServerProcess:
        port = port or free_port()
        full_env = {
            **os.environ,
            "JWT_SECRET": TEST_SECRET,
            "DROPTV_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        full_env.pop("REDIS_URL", None)
        cmd = [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            database_url,
            "--no-demo",
            *(args or []),
        ]
        if redis_url:
            cmd += ["--redis-url", redis_url]
        log_path = tmp_path / f"server-{port}.log"
        proc = spawn_logged(cmd, full_env, log_path)
        server = ServerProcess(port, proc, log_path)
        started.append(server)
        await wait_http(server.url, proc=proc)
        return server

    yield factory
    for server in started:
        server.terminate()
