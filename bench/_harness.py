"""What every benchmark shares: real backends, real server processes, meters, results.

A `Harness` is a context manager that owns every process a benchmark starts:
PostgreSQL, Valkey, `droptv-live serve` instances and floor servers. Leaving it
(normally, on an exception, on Ctrl-C or SIGTERM) stops them all, gracefully
first and with SIGKILL as the fallback. Server processes also get
PR_SET_PDEATHSIG, so they die with the benchmark even if it is killed -9.

Meters read CPU seconds (user + system, psutil) of the server processes, of the
load generator and of the whole machine over one window, so every figure can
be reported with what the load generator cost and how busy the host was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, Self

import numpy as np
import psutil

from server.auth import mint_bearer
from store.embedded import EmbeddedPostgres, EmbeddedValkey, free_port

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "bench" / "results"
BENCH_SECRET: Final = "bench-secret-" + uuid.uuid4().hex
HEALTH_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 15.0
PR_SET_PDEATHSIG: Final = 1


def raise_nofile(want: int = 1 << 20) -> int:
    """Raise this process's open-file limit as far as the hard limit allows; return the new soft limit.

    Children inherit it, so calling this before starting servers raises theirs too.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# Runs `argv[1:]` after asking the kernel to SIGTERM it when its parent dies (the flag
# survives exec), so servers never outlive a benchmark that was killed -9.
_DIE_WITH_PARENT: Final = (
    "import ctypes, os, sys\n"
    "try:\n"
    f"    ctypes.CDLL('libc.so.6').prctl({PR_SET_PDEATHSIG}, {int(signal.SIGTERM)})\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def percentiles(
    values: Sequence[float] | np.ndarray, scale: float = 1000.0
) -> dict[str, float | None]:
    """p50/p90/p99/max of `values` times `scale` (seconds → ms by default); None when empty."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "p50": round(float(p50) * scale, 3),
        "p90": round(float(p90) * scale, 3),
        "p99": round(float(p99) * scale, 3),
        "max": round(float(arr.max()) * scale, 3),
    }


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None, rounded to 3 places; None when there are none."""
    vals = [v for v in values if v is not None]
    return round(float(statistics.median(vals)), 3) if vals else None


def merged_latencies(results: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """The "lat" arrays (float64 bytes) of worker results as one array; empty without results."""
    arrays = [np.frombuffer(r["lat"], dtype=np.float64) for r in results]
    return np.concatenate(arrays) if arrays else np.array([], dtype=np.float64)


def merged_counts(results: Iterable[Mapping[str, Any]], key: str) -> Counter[Any]:
    """The sum of the `key` counters (e.g. statuses, errors) of worker results."""
    total: Counter[Any] = Counter()
    for r in results:
        total.update(r[key])
    return total


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    """A process and its live descendants (workers of `--workers`); the parent alone if gone."""
    procs = [proc]
    with contextlib.suppress(psutil.Error):
        procs += proc.children(recursive=True)
    return procs


def tree_cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU seconds of a process and its live descendants (workers of `--workers`)."""
    total = 0.0
    for p in _tree(proc):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in _tree(proc):
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def own_cpu_seconds() -> float:
    """This process's CPU seconds (user + system), e.g. the driver's."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Window:
    """CPU use of the servers, of this process and of the machine over one measured window."""

    wall_s: float
    server_cpu_s: float
    driver_cpu_s: float
    machine_busy_pct: float
    backend_cpu_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "wall_s": round(self.wall_s, 3),
            "server_cpu_s": round(self.server_cpu_s, 4),
            "driver_cpu_s": round(self.driver_cpu_s, 4),
            "backend_cpu_s": round(self.backend_cpu_s, 4),
            "machine_busy_pct": round(self.machine_busy_pct, 1),
        }


class Meter:
    """Start/stop a measurement window over a set of server processes.

    `backends` (PostgreSQL, Valkey) are metered apart. PostgreSQL backends that
    exit inside the window take their CPU with them, so backend figures are a
    lower bound when connections churn.
    """

    def __init__(
        self, procs: Iterable[psutil.Process], backends: Iterable[psutil.Process] = ()
    ) -> None:
        self.procs = list(procs)
        self.backends = list(backends)
        self._t0 = 0.0
        self._cpu0 = 0.0
        self._backend0 = 0.0
        self._own0 = 0.0
        self._machine0: Any = None

    def start(self) -> Meter:
        self._t0 = time.monotonic()
        self._cpu0 = sum(tree_cpu_seconds(p) for p in self.procs)
        self._backend0 = sum(tree_cpu_seconds(p) for p in self.backends)
        self._own0 = own_cpu_seconds()
        self._machine0 = psutil.cpu_times()
        return self

    def stop(self) -> Window:
        machine1 = psutil.cpu_times()
        total0, total1 = sum(self._machine0), sum(machine1)
        idle = (machine1.idle - self._machine0.idle) + (
            getattr(machine1, "iowait", 0.0) - getattr(self._machine0, "iowait", 0.0)
        )
        span = max(total1 - total0, 1e-9)
        return Window(
            wall_s=time.monotonic() - self._t0,
            server_cpu_s=sum(tree_cpu_seconds(p) for p in self.procs) - self._cpu0,
            driver_cpu_s=own_cpu_seconds() - self._own0,
            machine_busy_pct=100.0 * (1.0 - idle / span),
            backend_cpu_s=sum(tree_cpu_seconds(p) for p in self.backends) - self._backend0,
        )


@dataclass
class ServerProc:
    """One server process (project or floor) that the harness started and will stop."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.proc.pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.ps)

    def rss(self) -> int:
        return tree_rss(self.ps)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (graceful drain), then SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(psutil.Error):
                    for child in self.ps.children(recursive=True):
                        child.kill()
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def py_spy() -> str | None:
    """The py-spy executable (next to this Python, or on PATH), if installed."""
    import shutil

    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """Flame graphs (py-spy record, SVG) of server processes over one window.

    `with Profiler(out_dir, servers, seconds, tag)`: starts one `py-spy record`
    per server and waits for them on exit (each stops by itself after
    `seconds`), killing any that overrun. Without py-spy it does nothing and
    says so in `self.note`. py-spy samples from outside the process, so the
    server runs unmodified; its own CPU is not in the servers' figures.
    `fmt="raw"` writes collapsed stacks (.txt, one "frames count" line per stack)
    instead, for summing per-function costs with a script.
    """

    def __init__(
        self,
        out_dir: Path | None,
        servers: Sequence[ServerProc],
        seconds: float,
        tag: str,
        *,
        fmt: str = "flamegraph",
    ) -> None:
        self.out_dir = out_dir
        self.fmt = fmt
        self.servers = list(servers)
        self.seconds = max(round(seconds), 1)
        self.tag = tag
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: list[str] = []
        self.note = ""

    def __enter__(self) -> Self:
        if self.out_dir is None:
            return self
        exe = py_spy()
        if exe is None:
            self.note = "py-spy not installed (pip install py-spy): no flame graphs"
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for server in self.servers:
            suffix = ".txt" if self.fmt == "raw" else ".svg"
            out = self.out_dir / f"{self.tag}-{server.name}{suffix}"
            self.procs.append(
                subprocess.Popen(
                    [
                        exe,
                        "record",
                        "--pid",
                        str(server.proc.pid),
                        "--output",
                        str(out),
                        "--duration",
                        str(self.seconds),
                        "--rate",
                        "250",
                        "--format",
                        self.fmt,
                        "--nonblocking",
                        "--subprocesses",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            self.files.append(str(out))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            try:
                proc.wait(self.seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_healthy(server: ServerProc, timeout: float = HEALTH_TIMEOUT) -> None:
    """Poll GET /healthz until 200; fail early, with the log tail, if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(server.url + "/healthz", timeout=1.0) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(
        f"{server.name} on {server.port} not healthy in {timeout}s:\n{server.log_tail()}"
    )


class Harness:
    """Owns the processes of one benchmark run; `with Harness() as h:` stops them all on exit."""

    def __init__(self, *, keep_logs: bool = False) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="droptv-bench-"))
        self.keep_logs = keep_logs
        self.secret = BENCH_SECRET
        self.prefix = "bench" + uuid.uuid4().hex[:8]
        self.pg: EmbeddedPostgres | None = None
        self.valkey: EmbeddedValkey | None = None
        self.external_redis: str | None = None  # a Redis someone else runs: used, never stopped
        self.servers: list[ServerProc] = []
        self.notes: dict[str, Any] = {}
        self._old_term: Any = None
        self._counter = 0

    def __enter__(self) -> Self:
        raise_nofile()
        self._old_term = signal.signal(signal.SIGTERM, self._on_term)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        signal.signal(signal.SIGTERM, self._old_term or signal.SIG_DFL)

    @staticmethod
    def _on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    # -- backends -------------------------------------------------------------------------

    def start_postgres(self, *, fsync: bool) -> str:
        """A fresh PostgreSQL in a temporary directory. fsync=True is production durability."""
        self.pg = EmbeddedPostgres(self.tmp / "pgdata", fsync=fsync).start()
        self.notes["postgres_fsync"] = fsync
        return self.pg.url

    def start_valkey(self) -> str:
        self.valkey = EmbeddedValkey().start()
        return self.valkey.url

    @property
    def redis_url(self) -> str | None:
        return self.external_redis or (self.valkey.url if self.valkey else None)

    async def prepare_database(self, *, demo: bool = True) -> bool:
        """Migrate, then load the demo world; return whether the demo world is in place."""
        import asyncpg

        from store.pg import create_pool, migrate

        assert self.pg is not None
        await migrate(self.pg.url)
        if not demo:
            return False
        from store.demo import load_demo

        pool = await create_pool(self.pg.url, min_size=1, max_size=2)
        try:
            await load_demo(pool, now=datetime.now(UTC))
            conn: asyncpg.Connection
            async with pool.acquire() as conn:
                found = await conn.fetchval(
                    "select count(*) from creators where creator_id = 'creator_001'"
                )
        finally:
            await pool.close()
        self.notes["demo_world"] = bool(found)
        return bool(found)

    def backend_procs(self) -> list[psutil.Process]:
        """PostgreSQL and Valkey processes this harness started, for `Meter(backends=...)`."""
        found = []
        for server in (self.pg, self.valkey):
            if server is not None and server.proc is not None:
                with contextlib.suppress(psutil.Error):
                    found.append(psutil.Process(server.proc.pid))
        return found

    # -- servers ---------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], port: int, env: dict[str, str]) -> ServerProc:
        log_path = self.tmp / f"{name}-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", _DIE_WITH_PARENT, *cmd],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = ServerProc(name, port, proc, log_path)
        self.servers.append(server)
        return server

    def start_project(
        self, count: int, *, env: dict[str, str] | None = None, workers: int = 1
    ) -> list[ServerProc]:
        """`count` real `droptv-live serve` instances on this harness's PostgreSQL and Valkey."""
        assert self.pg is not None
        started = []
        for _ in range(count):
            self._counter += 1
            port = free_port()
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
                self.pg.url,
                "--no-demo",
            ]
            if self.redis_url:
                cmd += ["--redis-url", self.redis_url]
            if workers > 1:
                cmd += ["--workers", str(workers)]
            full_env = {
                **os.environ,
                "JWT_SECRET": self.secret,
                "DROPTV_REDIS_PREFIX": self.prefix,
                "DROPTV_LOG_LEVEL": "WARNING",
                "DROPTV_INSTANCE_ID": f"bench-{self._counter}",
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            }
            full_env.pop("DATABASE_URL", None)
            full_env.pop("REDIS_URL", None)
            started.append(self._spawn(f"project{self._counter}", cmd, port, full_env))
        for server in started:
            wait_healthy(server)
        return started

    def start_floor(self, count: int, *, channel: str) -> list[ServerProc]:
        """`count` floor servers (bench.floor) subscribed to Redis `channel`."""
        assert self.redis_url is not None
        started = []
        for _ in range(count):
            self._counter += 1
            port = free_port()
            cmd = [
                sys.executable,
                "-m",
                "bench.floor",
                "--port",
                str(port),
                "--redis-url",
                self.redis_url,
                "--channel",
                channel,
            ]
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            started.append(self._spawn(f"floor{self._counter}", cmd, port, env))
        for server in started:
            wait_healthy(server)
        return started

    def start_command(self, name: str, cmd: list[str], port: int) -> ServerProc:
        """Any other HTTP server of a benchmark (e.g. the bare aiohttp hello-world)."""
        server = self._spawn(name, cmd, port, {**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_healthy(server)
        return server

    def stop_servers(self, servers: Iterable[ServerProc]) -> None:
        for server in list(servers):
            server.stop()
            if server in self.servers:
                self.servers.remove(server)

    # -- tokens -------------------------------------------------------------------------------

    def token(self, user: str, *, admin: bool = False, ttl: float = 6 * 3600.0) -> str:
        return mint_bearer(self.secret, user, admin=admin, ttl=ttl)

    # -- teardown ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything, newest first; never raises, so every process gets its turn."""
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()
        self.servers.clear()
        if self.valkey is not None:
            with contextlib.suppress(Exception):
                self.valkey.stop()
            self.valkey = None
        if self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.stop()
            self.pg = None
        if not self.keep_logs:
            import shutil

            shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def harness(**kwargs: Any) -> Iterator[Harness]:
    with Harness(**kwargs) as h:
        yield h


# -- the command line and the result files -------------------------------------------------------


def command_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of `python -m bench.<module>`, with the module's docstring as its help."""
    return argparse.ArgumentParser(
        prog=f"python -m bench.{module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_result_args(parser: argparse.ArgumentParser, name: str) -> None:
    """`--out DIR` and `--name NAME`: where `write_result` puts NAME.json and NAME.png."""
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help=f"directory for {name}.json and {name}.png"
    )
    parser.add_argument("--name", default=name, help="base name of the result files")


def int_list(text: str) -> list[int]:
    """A comma list of integers ("1,2, 4"); empty items are skipped."""
    return [int(x) for x in text.split(",") if x.strip()]


def code_revision() -> str | None:
    """The code measured: `git describe --always --dirty` of the tree (DROPTV_BENCH_CODE when
    set, e.g. for a snapshot without .git); None when neither says."""
    if rev := os.environ.get("DROPTV_BENCH_CODE"):
        return rev
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode().strip() or None


def new_summary(bench: str, method: dict[str, Any]) -> dict[str, Any]:
    """The head every benchmark's summary starts with: what ran, when, where and how."""
    return {
        "bench": bench,
        "started_at": stamp(),
        "machine": machine_info(),
        "code": code_revision(),
        "command": f"python -m bench.{bench} " + " ".join(sys.argv[1:]),
        "method": method,
    }


def run_main(main: Coroutine[Any, Any, Any]) -> int:
    """Run a benchmark's `main_async` on uvloop; the exit status, 130 on Ctrl-C or SIGTERM.

    By the time KeyboardInterrupt gets here, `Harness` has stopped every process it started.
    """
    import uvloop

    try:
        uvloop.run(main)
    except KeyboardInterrupt:
        return 130
    return 0


def write_result(
    name: str,
    summary: dict[str, Any],
    out_dir: Path | None = None,
    *,
    chart: Callable[[Path], Any] | None = None,
) -> Path:
    """Write `summary` to <out_dir>/<name>.json, print it on stdout, return the path.

    With `chart`, first `chart(<out_dir>/<name>.png)` draws the PNG and summary["chart"] names it.
    """
    out = out_dir or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    if chart is not None:
        png = out / f"{name}.png"
        chart(png)
        summary["chart"] = png.name
    path = out / f"{name}.json"
    text = json.dumps(summary, indent=2, sort_keys=False, default=_jsonable)
    path.write_text(text + "\n")
    print(text, flush=True)
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded, or None when either side is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
