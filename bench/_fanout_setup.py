"""What the fan-out benchmarks share: the demo channel, watch sessions, starting a target.

bench.fanout (fixed-rate runs, connect rate) and bench.saturation (the highest
rate held) both start a configuration's servers here, give every watcher its
own user and watch session on the project, and summarize connect rates the
same way.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench import charts
from bench._harness import Harness, Meter, Profiler, ServerProc, median, ratio
from bench.loadgen import LoadGen, Target

CREATOR: Final = "creator_001"
CHANNEL: Final = "ch_101"
STREAM: Final = "stream_abc123"
LIVE: Final = f"/creators/{CREATOR}/channel/live"
# Health changes the driver cycles through: consecutive values always differ.
HEALTH_CYCLE: Final = ("fair", "good", "poor", "good")
# POST watch creates ~300 sessions/s here; past this many watchers sessions are COPYed into
# PostgreSQL instead (the rows POST watch would write), unless --sessions says otherwise.
REST_SESSIONS_UP_TO: Final = 2000


@dataclass(frozen=True)
class Config:
    target: str  # "project" or "floor"
    instances: int
    watchers: int
    rate: float
    duration: float
    repeat: int

    @property
    def label(self) -> str:
        return f"{self.target} K={self.instances} W={self.watchers}"


@dataclass
class Options:
    rate: float
    duration: float
    drain: float
    idle: float
    origin: float
    clients: int
    sessions: str  # "rest" or "sql"
    session_concurrency: int
    churn_rate: float
    connect_concurrency: int
    profile: Path | None = None
    profile_format: str = "flamegraph"
    connect_only: bool = False


# -- sessions -----------------------------------------------------------------------------------


async def create_sessions_rest(
    h: Harness, servers: list[ServerProc], users: list[str], concurrency: int
) -> list[str]:
    """POST watch for every user (round-robin over instances), `concurrency` at a time."""
    sids: list[str] = [""] * len(users)
    sem = asyncio.Semaphore(concurrency)
    body = {"channel_id": CHANNEL, "device_type": "web", "quality": "auto"}
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as http:

        async def one(i: int, user: str) -> None:
            url = servers[i % len(servers)].url + LIVE + "/watch"
            async with (
                sem,
                http.post(
                    url, json=body, headers={"Authorization": f"Bearer {h.token(user)}"}
                ) as resp,
            ):
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    errors.append(f"{resp.status} {data}")
                    return
                sids[i] = data["data"]["session"]["session_id"]

        await asyncio.gather(*(one(i, u) for i, u in enumerate(users)))
    if errors:
        raise RuntimeError(f"{len(errors)} watch sessions failed, e.g. {errors[0]}")
    return sids


async def create_sessions_sql(h: Harness, users: list[str]) -> list[str]:
    """Insert live sessions straight into watch_sessions (what POST watch stores), in one COPY."""
    import asyncpg

    from store.sessions import new_session_id

    assert h.pg is not None
    conn = await asyncpg.connect(h.pg.url)
    try:
        stream_id = await conn.fetchval(
            "select stream_id from streams where channel_id = $1 and ended_at is null", CHANNEL
        )
        if stream_id is None:
            raise RuntimeError(f"{CHANNEL} has no live stream")
        sids = [new_session_id() for _ in users]
        rows = [
            (sid, user, CREATOR, CHANNEL, stream_id, "web", "auto", "UTC")
            for sid, user in zip(sids, users, strict=True)
        ]
        async with conn.transaction():
            await conn.execute(
                "create temp table bench_sessions (session_id text, user_id text, creator_id text,"
                " channel_id text, stream_id text, device_type text, quality text, timezone text)"
                " on commit drop"
            )
            await conn.copy_records_to_table("bench_sessions", records=rows)
            await conn.execute(
                "insert into watch_sessions (session_id, user_id, creator_id, channel_id, stream_id,"
                " device_type, quality, timezone, expires_at)"
                " select *, now() + interval '6 hours' from bench_sessions"
            )
    finally:
        await conn.close()
    return sids


# -- pacing and targets ----------------------------------------------------------------------


async def paced(count: int, interval: float, t0: float, fire: Any) -> int:
    """Call `fire(i)` at t0 + i*interval for i < count; bounded in count and time."""
    done = 0
    for i in range(count):
        # asyncio may wake a hair early (clock resolution): never fire before the slot,
        # or the event's ts would fall before the measuring window's t0.
        while (delay := t0 + i * interval - time.time()) > 0:
            await asyncio.sleep(delay)
        await fire(i)
        done += 1
    return done


def floor_channel(h: Harness) -> str:
    """The floor's Redis channel, under this run's prefix so runs sharing a Redis never mix."""
    return f"{h.prefix}:floor:{CHANNEL}"


async def start_target(
    h: Harness, cfg: Config, opt: Options, run_id: str, servers: list[ServerProc]
) -> tuple[list[Target], dict[str, Any]]:
    """Start the servers of one configuration (appended to `servers`, so the caller stops
    them whatever happens) and return every watcher's target, with a session on the project."""
    extra: dict[str, Any] = {}
    if cfg.target == "floor":
        servers += h.start_floor(cfg.instances, channel=floor_channel(h))
        paths = ["/creators/creator_001/channel/live/ws"] * cfg.watchers
    else:
        servers += h.start_project(cfg.instances)
        users = [f"{run_id}_u{i}" for i in range(cfg.watchers)]
        t = time.monotonic()
        via = opt.sessions
        if via == "auto":
            via = "rest" if cfg.watchers <= REST_SESSIONS_UP_TO else "sql"
        if via == "sql":
            sids = await create_sessions_sql(h, users)
        else:
            sids = await create_sessions_rest(h, servers, users, opt.session_concurrency)
        took = time.monotonic() - t
        extra["sessions"] = {
            "created_via": via,
            "seconds": round(took, 2),
            "per_s": round(len(sids) / took, 1) if took > 0 else None,
        }
        paths = [
            f"{LIVE}/ws?session_id={sid}&access_token={h.token(user)}"
            for sid, user in zip(sids, users, strict=True)
        ]
    targets = [Target("127.0.0.1", servers[i % len(servers)].port, p) for i, p in enumerate(paths)]
    return targets, extra


async def run_connect(h: Harness, lg: LoadGen, cfg: Config, opt: Options) -> dict[str, Any]:
    """Connect-rate only: start the servers, open every watcher's websocket, close, stop."""
    servers: list[ServerProc] = []
    try:
        targets, extra = await start_target(h, cfg, opt, "c" + uuid.uuid4().hex[:6], servers)
        await asyncio.sleep(0.5)
        before = listen_counters()
        meter = Meter([s.ps for s in servers]).start()
        tag = f"connect-{cfg.target}-{cfg.watchers}"
        with Profiler(opt.profile, servers, 2.0, tag, fmt=opt.profile_format):
            connect = await lg.connect(targets, concurrency=opt.connect_concurrency)
        window = meter.stop()
        after = listen_counters()
        connect["server_cpu_ms_per_connect"] = round(
            1000 * window.server_cpu_s / max(connect["connected"], 1), 3
        )
        # Host-wide: SYNs dropped because an accept queue was full (the client retries after 1 s).
        connect["listen_overflows"] = {k: after[k] - before.get(k, 0) for k in after}
        if connect["connected"] < cfg.watchers:
            extra["connect_problem"] = {"log_tail": servers[0].log_tail(10)}
        await lg.disconnect()
    finally:
        h.stop_servers(servers)
    return {
        "target": cfg.target,
        "instances": cfg.instances,
        "watchers": cfg.watchers,
        "repeat": cfg.repeat,
        "connect": connect,
        **extra,
    }


def listen_counters() -> dict[str, int]:
    """TcpExt ListenOverflows and ListenDrops from /proc/net/netstat (empty if unreadable)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            table = dict(zip(head.split()[1:], values.split()[1:], strict=False))
            return {k: int(table[k]) for k in ("ListenOverflows", "ListenDrops") if k in table}
    return {}


def connect_rate_block(runs: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """Connect rate per target (median over runs) and project/floor, against issue 10's target."""
    out: dict[str, Any] = {
        "method": "watchers/s from the first connect attempt until the last watcher had its "
        "`hello` (the project's full snapshot; the floor sends a tiny hello right after the "
        "101, so both are timed to their first message)",
        "in_flight_per_loadgen_process": concurrency if concurrency > 0 else "all at once",
    }
    for target in ("project", "floor"):
        mine = [r["connect"] for r in runs if r["target"] == target]
        if mine:
            out[target] = {
                "connect_rate_per_s": median([c["connect_rate_per_s"] for c in mine]),
                "connect_seconds": median([c["connect_seconds"] for c in mine]),
                "server_cpu_ms_per_connect": median(
                    [c.get("server_cpu_ms_per_connect") for c in mine]
                ),
                "time_to_ready_p99_ms": median([c["time_to_ready_ms"]["p99"] for c in mine]),
                "listen_overflows": sum(
                    c.get("listen_overflows", {}).get("ListenOverflows", 0) for c in mine
                ),
                "watchers": median([c["requested"] for c in mine]),
                "failed": sum(c["failed"] for c in mine),
                "runs": len(mine),
            }
    if "project" in out and "floor" in out:
        value = ratio(out["project"]["connect_rate_per_s"], out["floor"]["connect_rate_per_s"])
        out["ratio_project_over_floor"] = value
        out["target"] = ">= 0.5"
        out["met"] = None if value is None else value >= 0.5
    return out


def connect_chart(png: Path, summary: dict[str, Any]) -> Path:
    """Connect rate per run, project beside floor (A B pairs in run order)."""
    runs = summary["runs"]
    groups = sorted({(r["instances"], r["watchers"], r["repeat"]) for r in runs})

    def rate(target: str, key: tuple[int, int, int]) -> float | None:
        for r in runs:
            if r["target"] == target and (r["instances"], r["watchers"], r["repeat"]) == key:
                return r["connect"]["connect_rate_per_s"]  # type: ignore[no-any-return]
        return None

    return charts.grouped_bars(
        png,
        [f"K={k} W={w} #{rep}" for k, w, rep in groups],
        {t: [rate(t, g) for g in groups] for t in ("project", "floor")},
        title="websocket connect rate, every watcher at once, until its hello "
        f"({summary['machine']['cores']} cores)",
        ylabel="watchers connected per second",
    )
