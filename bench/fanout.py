"""Fan-out: delivery latency, broadcast completion, CPU per delivery and RSS per watcher.

    python -m bench.fanout --instances 1,2 --watchers 1000,10000 --rate 5 --duration 10 --compare-floor

For each configuration (instances K × watchers W) it starts K server
instances on one PostgreSQL and one Valkey, gives every watcher its own user
and watch session, opens W websockets spread evenly over the instances from
several client processes (bench.loadgen), then drives real channel events at
a fixed rate for a fixed time and counts what every watcher received.

Events driven against the project: admin-published stream health changes at
`--rate` per second (every one is a change, so every one is a `stream`
message) plus viewer-count changes from real watch sessions joining and
leaving (coalesced by the server to at most one `viewers` per
viewer_interval). The floor (bench.floor) gets the same mix published
straight to its Redis channel: `--rate` stream-shaped messages per second
plus one viewers-shaped message per second.

With `--compare-floor`, project and floor runs alternate (A B A B ...,
`--repeats` pairs) inside one invocation, so a drifting host skews both alike,
and the summary carries the ratio project/floor of each figure (medians over
the repeats). Output: JSON on stdout and in bench/results/fanout.json, and a
latency CDF per configuration in bench/results/fanout.png.

Every summary has `connect_rate`: watchers connected per second (from the first
attempt until the last watcher had its first message, `hello` on both
targets), per target and project/floor (issue 10 wants >= 0.5).
`--connect-only` measures just that, every watcher connecting at once, and
writes fanout_connect.json/.png:

    python -m bench.fanout --connect-only --instances 2 --watchers 5000 --compare-floor --repeats 3

`--saturate` steps the event rate up until p99 > 1 s or a miss and reports the
highest rate held (bench/saturation.py; fanout_saturation.json/.png).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import aiohttp
import numpy as np

from bench import charts, saturation
from bench._fanout_setup import (
    CHANNEL,
    HEALTH_CYCLE,
    LIVE,
    REST_SESSIONS_UP_TO,
    STREAM,
    Config,
    Options,
    connect_chart,
    connect_rate_block,
    floor_channel,
    paced,
    run_connect,
    start_target,
)
from bench._harness import (
    Harness,
    Meter,
    Profiler,
    ServerProc,
    add_result_args,
    command_parser,
    int_list,
    median,
    new_summary,
    percentiles,
    ratio,
    run_main,
    write_result,
)
from bench.loadgen import Deliveries, LoadGen

# Admin endpoint that changes the live stream's health (server/routes/admin.py, StreamPatch).
ADMIN_HEALTH: Final = ("PATCH", f"/admin/channels/{CHANNEL}/live", "health")


# -- event drivers ------------------------------------------------------------------------------


async def drive_floor(redis_url: str, channel: str, rate: float, duration: float, t0: float) -> int:
    """Publish the project's message mix to the floor's Redis channel; return messages published."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    epoch = uuid.uuid4().hex[:16]
    seq = 0
    lock = asyncio.Lock()

    async def publish(kind: str, i: int) -> None:
        nonlocal seq
        async with lock:
            seq += 1
            # The project's StreamStatus and Viewers messages, field for field.
            if kind == "stream":
                msg: dict[str, Any] = {
                    "type": "stream",
                    "epoch": epoch,
                    "seq": seq,
                    "ts": time.time(),
                    "stream_id": STREAM,
                    "is_live": True,
                    "health": HEALTH_CYCLE[i % len(HEALTH_CYCLE)],
                    "title": "Behind the Laughs",
                }
            else:
                msg = {
                    "type": "viewers",
                    "epoch": epoch,
                    "seq": seq,
                    "ts": time.time(),
                    "watching_now": 10000 + i,
                    "watching_now_formatted": "10K",
                    "delta": 1,
                    "peak_today": 10000 + i,
                    "peak_today_formatted": "10K",
                }
            await client.publish(channel, json.dumps(msg, separators=(",", ":")))

    try:
        n_stream = int(rate * duration)
        n_viewers = int(duration)
        results = await asyncio.gather(
            paced(n_stream, 1.0 / rate, t0, lambda i: publish("stream", i)),
            paced(n_viewers, 1.0, t0 + 0.5, lambda i: publish("viewers", i)),
        )
    finally:
        await client.aclose()
    return sum(results)


class ProjectDriver:
    """Causes real channel events on the project through its public API."""

    def __init__(self, h: Harness, servers: list[ServerProc], run_id: str) -> None:
        self.h = h
        self.servers = servers
        self.run_id = run_id
        self.admin = {"Authorization": f"Bearer {h.token('bench_admin', admin=True)}"}
        # Counters survive across drive() calls, so consecutive health values always differ
        # and churn users are never reused.
        self.health_i = 0
        self.churn_i = 0
        self.open_sessions: list[tuple[str, str]] = []

    async def drive(
        self, rate: float, duration: float, churn_rate: float, t0: float
    ) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            health_errors: list[str] = []
            churn_errors: list[str] = []

            async def health(_: int) -> None:
                i = self.health_i
                self.health_i += 1
                method, path, field = ADMIN_HEALTH
                url = self.servers[i % len(self.servers)].url + path
                async with http.request(
                    method,
                    url,
                    json={field: HEALTH_CYCLE[i % len(HEALTH_CYCLE)]},
                    headers=self.admin,
                ) as resp:
                    if resp.status >= 300:
                        health_errors.append(f"{resp.status} {await resp.text()}"[:300])

            open_sessions = self.open_sessions

            async def churn(_: int) -> None:
                i = self.churn_i
                self.churn_i += 1
                # Two join, then two leave: the count moves every half second and differs at
                # every viewer_interval tick (a join+leave pair inside one tick would cancel out).
                base = self.servers[i % len(self.servers)].url + LIVE + "/watch"
                if i % 4 < 2 or not open_sessions:
                    user = f"{self.run_id}_churn{i}"
                    auth = {"Authorization": f"Bearer {self.h.token(user)}"}
                    async with http.post(
                        base, json={"channel_id": CHANNEL, "device_type": "ios"}, headers=auth
                    ) as resp:
                        data = await resp.json(content_type=None)
                        if resp.status != 200:
                            churn_errors.append(f"{resp.status} {data}"[:300])
                            return
                        open_sessions.append((user, data["data"]["session"]["session_id"]))
                else:
                    user, sid = open_sessions.pop(0)
                    auth = {"Authorization": f"Bearer {self.h.token(user)}"}
                    async with http.delete(base, params={"session_id": sid}, headers=auth) as resp:
                        if resp.status != 200:
                            churn_errors.append(f"{resp.status} {await resp.text()}"[:300])

            n_health = int(rate * duration)
            n_churn = int(churn_rate * duration)
            done = await asyncio.gather(
                paced(n_health, 1.0 / rate, t0, health),
                paced(n_churn, 1.0 / churn_rate, t0 + 0.1, churn)
                if n_churn
                else asyncio.sleep(0, 0),
            )
        return {
            "health_changes": done[0],
            "churn_ops": done[1],
            "ops_ok": done[0] + done[1] - len(health_errors) - len(churn_errors),
            "health_errors": health_errors[:3],
            "health_error_count": len(health_errors),
            "churn_errors": churn_errors[:3],
            "churn_error_count": len(churn_errors),
        }


# -- one run ------------------------------------------------------------------------------------


def _rss(servers: list[ServerProc]) -> int:
    return sum(s.rss() for s in servers)


def _summary(
    cfg: Config,
    d: Deliveries,
    window: dict[str, float],
    idle_cpu_per_s: float,
    origin_cpu_s: float,
    connect: dict[str, Any],
    rss_before: int,
    rss_after: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    deliveries = d.deliveries
    completion = d.completion()
    cpu = window["server_cpu_s"]
    net_cpu = cpu - idle_cpu_per_s * window["wall_s"]
    fanout_cpu = cpu - origin_cpu_s
    expected = d.watchers * max(len(d.per_seq), d.published or 0)
    return {
        "target": cfg.target,
        "instances": cfg.instances,
        "watchers": cfg.watchers,
        "rate_per_s": cfg.rate,
        "duration_s": cfg.duration,
        "repeat": cfg.repeat,
        "connect": connect,
        "latency_ms": percentiles(d.latencies),
        "completion_ms": {
            **{k: v for k, v in percentiles(completion).items() if k != "p90"},
            "complete_broadcasts": int(completion.size),
        },
        "broadcasts": len(d.per_seq),
        "broadcasts_by_type": d.by_type(),
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "deliveries_per_s": round(deliveries / cfg.duration, 1),
        "missed": d.missed(),
        "duplicated": d.dups,
        "seq_gaps": d.seq_gaps(),
        "connect_failed": connect["failed"],
        "server_cpu_s": round(cpu, 4),
        "server_cpu_us_per_delivery": round(cpu / deliveries * 1e6, 2) if deliveries else None,
        "server_origin_cpu_s": round(origin_cpu_s, 4),
        "server_cpu_us_per_delivery_net_of_origin": round(fanout_cpu / deliveries * 1e6, 2)
        if deliveries
        else None,
        "server_idle_cpu_s_per_s": round(idle_cpu_per_s, 4),
        "server_cpu_us_per_delivery_net_of_idle": round(net_cpu / deliveries * 1e6, 2)
        if deliveries
        else None,
        "rss_before_mib": round(rss_before / 2**20, 2),
        "rss_after_mib": round(rss_after / 2**20, 2),
        "rss_per_watcher_kib": round((rss_after - rss_before) / 1024 / max(d.watchers, 1), 2),
        "loadgen_cpu_s": round(d.loadgen_cpu_s, 3),
        "loadgen_cpu_pct_of_one_core": round(100 * d.loadgen_cpu_s / window["wall_s"], 1),
        "driver_cpu_s": window["driver_cpu_s"],
        "machine_busy_pct": window["machine_busy_pct"],
        "window_s": window["wall_s"],
        "closes": {str(k): v for k, v in d.closes.items()},
        "hellos_in_window": d.hellos_in_window,
        "other_messages": d.other,
        "open_at_end": d.open_at_end,
        **extra,
    }


async def run_one(
    h: Harness, lg: LoadGen, cfg: Config, opt: Options
) -> tuple[dict[str, Any], np.ndarray]:
    """Start the servers of one configuration, connect, drive, count, and stop the servers."""
    run_id = "b" + uuid.uuid4().hex[:6]
    servers: list[ServerProc] = []
    try:
        driver: ProjectDriver | None = None
        origin_per_op = 0.0
        targets, extra = await start_target(h, cfg, opt, run_id, servers)
        if cfg.target == "project":
            # What causing the events costs (admin PATCHes, session joins/leaves) with nobody
            # connected: the floor gets its events for free from Redis, so this is reported apart.
            driver = ProjectDriver(h, servers, run_id)
            if opt.origin > 0:
                meter = Meter([s.ps for s in servers]).start()
                base = await driver.drive(cfg.rate, opt.origin, opt.churn_rate, time.time() + 0.1)
                origin_w = meter.stop()
                origin_per_op = origin_w.server_cpu_s / max(base["ops_ok"], 1)
                extra["origin_baseline"] = {
                    **origin_w.as_dict(),
                    "ops": base["ops_ok"],
                    "server_cpu_us_per_op": round(origin_per_op * 1e6, 1),
                }
        await asyncio.sleep(0.5)
        rss_before = _rss(servers)
        connect = await lg.connect(targets, concurrency=opt.connect_concurrency)
        if connect["connected"] < cfg.watchers:
            extra["connect_problem"] = {"log_tail": servers[0].log_tail(10)}
        await asyncio.sleep(1.0)
        rss_after = _rss(servers)
        idle = Meter([s.ps for s in servers]).start()
        await asyncio.sleep(opt.idle)
        idle_w = idle.stop()
        idle_cpu_per_s = idle_w.server_cpu_s / idle_w.wall_s
        t0 = time.time() + 0.3
        await lg.measure(t0)
        published: int | None = None
        expected: dict[str, int] = {}
        origin_cpu = 0.0
        tag = f"{cfg.target}-k{cfg.instances}-w{cfg.watchers}-r{cfg.repeat}"
        with Profiler(opt.profile, servers, cfg.duration, tag, fmt=opt.profile_format) as profiler:
            meter = Meter([s.ps for s in servers]).start()
            if driver is None:
                assert h.redis_url is not None
                published = await drive_floor(
                    h.redis_url, floor_channel(h), cfg.rate, cfg.duration, t0
                )
            else:
                driven = await driver.drive(cfg.rate, cfg.duration, opt.churn_rate, t0)
                extra["driver"] = driven
                origin_cpu = origin_per_op * driven["ops_ok"]
                # Each accepted health change is one `stream` event; viewers are coalesced by
                # the server, so for them the union of seqs seen by any watcher is the truth.
                expected["stream"] = driven["health_changes"] - driven["health_error_count"]
            t_end = time.time()
            await asyncio.sleep(opt.drain)
            window = meter.stop().as_dict()
        if opt.profile is not None:
            extra["flame_graphs"] = profiler.files or profiler.note
        deliveries = await lg.collect(t_end, published=published, expected_by_type=expected)
        await lg.disconnect()
    finally:
        h.stop_servers(servers)
    return _summary(
        cfg, deliveries, window, idle_cpu_per_s, origin_cpu, connect, rss_before, rss_after, extra
    ), deliveries.latencies


# -- the invocation -----------------------------------------------------------------------------

FIGURES: Final[list[tuple[str, Callable[[dict[str, Any]], Any]]]] = [
    ("latency_p50_ms", lambda r: r["latency_ms"]["p50"]),
    ("latency_p90_ms", lambda r: r["latency_ms"]["p90"]),
    ("latency_p99_ms", lambda r: r["latency_ms"]["p99"]),
    ("latency_max_ms", lambda r: r["latency_ms"]["max"]),
    ("completion_p50_ms", lambda r: r["completion_ms"]["p50"]),
    ("completion_p99_ms", lambda r: r["completion_ms"]["p99"]),
    ("deliveries_per_s", lambda r: r["deliveries_per_s"]),
    ("server_cpu_s", lambda r: r["server_cpu_s"]),
    ("server_cpu_us_per_delivery", lambda r: r["server_cpu_us_per_delivery"]),
    (
        "server_cpu_us_per_delivery_net_of_origin",
        lambda r: r["server_cpu_us_per_delivery_net_of_origin"],
    ),
    (
        "server_cpu_us_per_delivery_net_of_idle",
        lambda r: r["server_cpu_us_per_delivery_net_of_idle"],
    ),
    ("rss_per_watcher_kib", lambda r: r["rss_per_watcher_kib"]),
    ("connect_rate_per_s", lambda r: r["connect"]["connect_rate_per_s"]),
    ("loadgen_cpu_s", lambda r: r["loadgen_cpu_s"]),
    ("machine_busy_pct", lambda r: r["machine_busy_pct"]),
    ("missed", lambda r: r["missed"]),
    ("connect_failed", lambda r: r["connect_failed"]),
    ("duplicated", lambda r: r["duplicated"]),
]


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (instances, watchers): medians over repeats per target, and project/floor ratios."""
    keys = sorted({(r["instances"], r["watchers"]) for r in runs})
    out = []
    for k, w in keys:
        entry: dict[str, Any] = {"instances": k, "watchers": w}
        for target in ("project", "floor"):
            mine = [
                r
                for r in runs
                if r["target"] == target and (r["instances"], r["watchers"]) == (k, w)
            ]
            if mine:
                entry[target] = {name: median([get(r) for r in mine]) for name, get in FIGURES}
                entry[target]["runs"] = len(mine)
        if "project" in entry and "floor" in entry:
            entry["ratio_project_over_floor"] = {
                name: ratio(entry["project"][name], entry["floor"][name])
                for name, _ in FIGURES
                if name not in ("missed", "duplicated", "connect_failed")
            }
        out.append(entry)
    return out


def _print_table(entry: dict[str, Any]) -> None:
    """Project, floor and their ratio per figure, for a human on stderr (stdout is the JSON)."""
    print(
        f"# K={entry['instances']} W={entry['watchers']}: figure, project, floor, "
        "project/floor (medians over repeats)",
        file=sys.stderr,
    )
    for name, _ in FIGURES:
        p = (entry.get("project") or {}).get(name)
        f = (entry.get("floor") or {}).get(name)
        r = (entry.get("ratio_project_over_floor") or {}).get(name)
        print(f"#   {name:42s} {p!s:>10} {f!s:>10} {r!s:>8}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("fanout", __doc__)
    p.add_argument(
        "--instances",
        default=None,
        help="comma list of instance counts (K); default 1,2 (2 with --saturate)",
    )
    p.add_argument("--watchers", default="1000", help="comma list of watcher counts (W)")
    p.add_argument("--rate", type=float, default=5.0, help="admin events per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of driven events per run")
    p.add_argument(
        "--drain",
        type=float,
        default=2.0,
        help="seconds to wait for stragglers after the last event",
    )
    p.add_argument(
        "--idle", type=float, default=2.0, help="seconds of idle CPU measured before driving"
    )
    p.add_argument(
        "--origin",
        type=float,
        default=3.0,
        help="seconds of driver-only CPU measured before connecting (project)",
    )
    p.add_argument(
        "--compare-floor", action="store_true", help="also run the floor, interleaved A B A B"
    )
    p.add_argument(
        "--targets", default=None, help="comma list of project,floor (overrides --compare-floor)"
    )
    p.add_argument("--repeats", type=int, default=1, help="runs of each target per configuration")
    p.add_argument("--clients", type=int, default=2, help="load generator processes")
    p.add_argument(
        "--sessions",
        choices=("auto", "rest", "sql"),
        default="auto",
        help="create watch sessions through POST watch (rest) or by COPY into "
        f"PostgreSQL (sql); auto: rest up to {REST_SESSIONS_UP_TO} watchers, sql above",
    )
    p.add_argument("--session-concurrency", type=int, default=32)
    p.add_argument(
        "--connect-concurrency",
        type=int,
        default=None,
        help="in-flight connects per client process; 0: all at once (default 200; 0 with "
        "--connect-only and --saturate)",
    )
    p.add_argument(
        "--connect-only",
        action="store_true",
        help="measure the connect rate only (every watcher at once): no events",
    )
    p.add_argument(
        "--churn-rate", type=float, default=2.0, help="session joins+leaves per second (project)"
    )
    p.add_argument(
        "--redis-url", help="use this Redis instead of starting Valkey (floor-only runs)"
    )
    p.add_argument(
        "--fsync",
        action="store_true",
        help="PostgreSQL with fsync on (default off: no ingest here)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write py-spy flame graphs (SVG) of the servers' driven window here",
    )
    p.add_argument(
        "--profile-format",
        choices=("flamegraph", "raw"),
        default="flamegraph",
        help="py-spy output: flamegraph (SVG) or raw collapsed stacks (.txt)",
    )
    saturation.add_args(p)
    add_result_args(p, "fanout")
    return p


def resolve_defaults(args: argparse.Namespace) -> None:
    """Defaults that depend on the mode; result names per mode so runs do not overwrite."""
    storm = args.saturate or args.connect_only
    if args.instances is None:
        args.instances = "2" if args.saturate else "1,2"
    if args.connect_concurrency is None:
        args.connect_concurrency = 0 if storm else 200
    if args.name == "fanout" and args.saturate:
        args.name = "fanout_saturation"
    elif args.name == "fanout" and args.connect_only:
        args.name = "fanout_connect"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    resolve_defaults(args)
    if args.targets:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    else:
        targets = ["project", "floor"] if args.compare_floor else ["project"]
    opt = Options(
        rate=args.rate,
        duration=args.duration,
        drain=args.drain,
        idle=args.idle,
        origin=args.origin,
        clients=args.clients,
        sessions=args.sessions,
        session_concurrency=args.session_concurrency,
        churn_rate=args.churn_rate,
        connect_concurrency=args.connect_concurrency,
        profile=args.profile,
        profile_format=args.profile_format,
        connect_only=args.connect_only,
    )
    if args.saturate:
        return await saturation.main_async(args, targets, opt)
    configs = []
    for k in int_list(args.instances):
        for w in int_list(args.watchers):
            for rep in range(args.repeats):
                for target in targets:  # interleaved: A B A B
                    configs.append(Config(target, k, w, args.rate, args.duration, rep))
    summary = new_summary(
        "fanout",
        {
            "events": "project: admin stream-health changes at rate_per_s plus viewers from real "
            "session joins/leaves (churn_rate ops/s, coalesced by the server); floor: the "
            "same mix published to its Redis channel",
            "latency": "client receive time (one time.time() per read, before parsing) minus the "
            "message's origin ts",
            "completion": "per broadcast: origin ts to the receive time of the last watcher",
            "missed": "per (epoch, seq) of viewers/epg/stream messages with ts in the window, "
            "watchers that did not receive it; duplicated: a watcher receiving one twice",
            "server_cpu": "user+system CPU seconds of the server processes (psutil) from the first "
            "event to the end of the drain; net_of_origin subtracts what causing the "
            "events costs the project (admin PATCHes and session joins/leaves, CPU "
            "per request measured with no watchers connected; the floor's events "
            "cost it nothing); net_of_idle subtracts the idle rate "
            "measured with all watchers connected and no events",
            "rss_per_watcher": "(server RSS after all watchers connected and 1 s settle - RSS before "
            "connecting, sessions already created) / watchers",
            "connect_rate": "watchers/s from the first connect until the last watcher got hello",
            "sessions": "one user and one watch session per watcher; each project run's "
            "sessions.created_via says how: rest = POST watch, sql = COPY of the "
            "same rows into watch_sessions (faster to set up at 10,000)",
            "postgres_fsync": bool(args.fsync),
        },
    )
    summary["runs"] = []
    latencies: dict[str, list[np.ndarray]] = {}
    with Harness() as h:
        need_project = "project" in targets
        if need_project:
            h.start_postgres(fsync=bool(args.fsync))
            summary["demo_world"] = await h.prepare_database(demo=True)
        if args.redis_url:
            if need_project:
                raise SystemExit("--redis-url is for floor-only runs")
            h.external_redis = args.redis_url
        else:
            h.start_valkey()
        with LoadGen(args.clients) as lg:
            for cfg in configs:
                if opt.connect_only:
                    summary["runs"].append(await run_connect(h, lg, cfg, opt))
                    c = summary["runs"][-1]["connect"]
                    print(
                        f"# {cfg.label} rep {cfg.repeat}: {c['connect_rate_per_s']}/s, "
                        f"connected {c['connected']}/{cfg.watchers} in {c['connect_seconds']} s",
                        file=sys.stderr,
                    )
                    continue
                result, lat = await run_one(h, lg, cfg, opt)
                summary["runs"].append(result)
                latencies.setdefault(cfg.label, []).append(lat)
                print(
                    f"# {cfg.label} rep {cfg.repeat}: p50 {result['latency_ms']['p50']} ms, "
                    f"connected {result['connect']['connected']}/{cfg.watchers}, "
                    f"missed {result['missed']}, dup {result['duplicated']}, "
                    f"cpu/delivery {result['server_cpu_us_per_delivery']} us",
                    file=sys.stderr,
                )
    summary["connect_rate"] = connect_rate_block(summary["runs"], opt.connect_concurrency)
    if opt.connect_only:
        print(f"# connect rate: {summary['connect_rate']}", file=sys.stderr)
        write_result(args.name, summary, args.out, chart=lambda png: connect_chart(png, summary))
        return summary
    summary["configs"] = aggregate(summary["runs"])
    for entry in summary["configs"]:
        _print_table(entry)
    write_result(
        args.name,
        summary,
        args.out,
        chart=lambda png: charts.latency_cdf(
            png,
            {k: np.concatenate(v) for k, v in latencies.items()},
            title=f"fan-out delivery latency, {args.rate:g} events/s + viewers "
            f"({summary['machine']['cores']} cores)",
        ),
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_main(main_async(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
