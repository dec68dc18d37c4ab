"""Saturation: the highest event rate the fan-out holds (`python -m bench.fanout --saturate`).

    python -m bench.fanout --saturate --instances 2 --watchers 1000 --compare-floor

Issue 10, item 6. With W watchers connected over K instances, the event rate
is stepped up (×`--sat-factor` per step from `--sat-start`) until a step
fails: its delivery p99 passes `--sat-p99-ms` (1 s), or any watcher missed
one of the step's messages (not there when the step's drain ended), or a
socket was closed. Then `--sat-refine` steps bisect (geometrically) between
the last rate held and the first that failed. The highest rate held is
reported as events/s published and messages delivered/s, per target, and
project/floor (target: >= 0.85). Every ramp is bounded in steps and time.

What is driven. Only the receive path is under test, so both targets get
their events straight from Redis, the same bytes per event: a `stream`
message (the project's `StreamStatus`, a health change each time). The
project's copy is exactly what its lease holder publishes (server/origin.py
`Origin.stream` minus the database read): a seq from the project's own
sequencer (store.lease, one Lua call), the bus envelope (protocol.bus), and
PUBLISH on the channel's bus name. Its instances therefore do all of their
per-event receive work (bus reader → Delivery → Hub.broadcast →
transport.write) and none of the origin's. The floor gets the bare message on
its channel. Project and floor ramps alternate (A B A B, `--repeats` pairs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from bench import charts
from bench._fanout_setup import (
    CHANNEL,
    HEALTH_CYCLE,
    STREAM,
    Config,
    Options,
    connect_rate_block,
    floor_channel,
    paced,
    start_target,
)
from bench._harness import (
    Harness,
    Meter,
    Profiler,
    ServerProc,
    int_list,
    median,
    new_summary,
    percentiles,
    ratio,
    write_result,
)
from bench.loadgen import LoadGen
from protocol.bus import Envelope, Kind, pack
from protocol.messages import StreamStatus, encode_server
from store.keys import Keys
from store.lease import Position, RedisSequencer, new_epoch

TARGET_RATIO: Final = 0.85
# Seconds between a failed step and a refining one, so the failed step's backlog is gone.
RECOVER_S: Final = 3.0
TITLE: Final = "Behind the Laughs"


class Publisher:
    """Publishes one `stream` event per call, as the project's origin would, to one target."""

    def __init__(self, h: Harness, target: str) -> None:
        import redis.asyncio as redis

        assert h.redis_url is not None
        self.client = redis.Redis.from_url(h.redis_url)
        self.target = target
        self.keys = Keys(h.prefix)
        self.sequencer = RedisSequencer(self.client, self.keys)
        self.epoch = new_epoch()
        self.seq = 0
        self.name = self.keys.bus(CHANNEL) if target == "project" else floor_channel(h)
        self.i = 0

    async def __call__(self, _: int) -> None:
        i = self.i
        self.i += 1
        if self.target == "project":
            pos = await self.sequencer.next(CHANNEL)
        else:
            self.seq += 1
            pos = Position(self.epoch, self.seq)
        ts = time.time()
        # convert(), not the constructor: it validates `health` into the project's enum
        # wherever that enum lives (protocol is being reorganized).
        status = msgspec.convert(
            {
                "epoch": pos.epoch,
                "seq": pos.seq,
                "ts": ts,
                "stream_id": STREAM,
                "is_live": True,
                "health": HEALTH_CYCLE[i % len(HEALTH_CYCLE)],
                "title": TITLE,
            },
            StreamStatus,
        )
        payload = encode_server(status)
        if self.target == "project":
            envelope = Envelope(
                channel=CHANNEL,
                kind=Kind.BROADCAST,
                type="stream",
                epoch=pos.epoch,
                seq=pos.seq,
                instance_id="bench-saturation",
                ts=ts,
            )
            payload = pack(envelope, payload)
        await self.client.publish(self.name, payload)

    async def close(self) -> None:
        await self.client.aclose()


async def run_step(
    lg: LoadGen,
    servers: list[ServerProc],
    publish: Callable[[int], Awaitable[None]],
    rate: float,
    args: argparse.Namespace,
    profile: Profiler,
    closes_before: int,
) -> dict[str, Any]:
    """Publish at `rate` for one step, drain, and judge it (held or not)."""
    seconds: float = args.sat_step_seconds
    t0 = time.time() + 0.2
    await lg.measure(t0)
    meter = Meter([s.ps for s in servers]).start()
    with profile:
        published = await paced(max(int(rate * seconds), 1), 1.0 / rate, t0, publish)
        t_end = time.time()
    await asyncio.sleep(args.drain)
    window = meter.stop()
    d = await lg.collect(t_end, expected_by_type={"stream": published})
    # Each event owns one interval of the schedule: n events span n / rate when on time.
    span = max(t_end - t0, 0.0) + 1.0 / rate
    lat = percentiles(d.latencies)
    closes = sum(d.closes.values()) - closes_before
    missed = d.missed()
    p99 = lat["p99"]
    reasons = []
    if p99 is None or p99 > args.sat_p99_ms:
        reasons.append(f"p99 {p99} ms > {args.sat_p99_ms:g} ms")
    if missed:
        reasons.append(f"{missed} missed")
    if closes or d.open_at_end < d.watchers:
        reasons.append(f"{closes} sockets closed ({d.watchers - d.open_at_end} of {d.watchers})")
    step = {
        "rate_nominal": round(rate, 2),
        "published": published,
        "events_per_s": round(published / span, 1),
        "deliveries": d.deliveries,
        "deliveries_per_s": round(d.deliveries / span, 1),
        "latency_ms": lat,
        "completion_p99_ms": percentiles(d.completion())["p99"],
        "missed": missed,
        "duplicated": d.dups,
        "closes": closes,
        "server_cpu_pct_of_one_core": round(100 * window.server_cpu_s / window.wall_s, 1),
        "loadgen_cpu_pct_of_one_core": round(100 * d.loadgen_cpu_s / window.wall_s, 1),
        "machine_busy_pct": round(window.machine_busy_pct, 1),
        "held": not reasons,
        "failed_because": reasons,
    }
    if profile.files:
        step["profiles"] = profile.files
    return step


async def run_ramp(
    h: Harness, lg: LoadGen, cfg: Config, opt: Options, args: argparse.Namespace
) -> dict[str, Any]:
    """One target's ramp: start its servers, connect every watcher at once, step the rate up."""
    servers: list[ServerProc] = []
    steps: list[dict[str, Any]] = []
    stopped = "steps exhausted"
    publish: Publisher | None = None
    try:
        targets, extra = await start_target(h, cfg, opt, f"s{cfg.repeat}{cfg.target[0]}", servers)
        await asyncio.sleep(0.5)
        connect = await lg.connect(targets, concurrency=opt.connect_concurrency)
        await asyncio.sleep(1.0)
        publish = Publisher(h, cfg.target)
        # Closes seen so far (sockets the server closed while connecting): steps count new ones.
        await lg.measure(time.time())
        closes = sum((await lg.collect(time.time())).closes.values())
        deadline = time.monotonic() + args.sat_max_seconds
        held: float | None = None
        failed: float | None = None
        rate: float = args.sat_start
        rising = refining = 0
        while rising < args.sat_steps and refining <= args.sat_refine:
            if time.monotonic() > deadline:
                stopped = "time limit"
                break
            tag = f"saturate-{cfg.target}-r{cfg.repeat}-{rate:.0f}"
            prof = Profiler(
                opt.profile if cfg.target == "project" else None,
                servers,
                args.sat_step_seconds,
                tag,
                fmt=opt.profile_format,
            )
            step = await run_step(lg, servers, publish, rate, args, prof, closes)
            closes += step["closes"]
            steps.append(step)
            print(
                f"# {cfg.label} rep {cfg.repeat}: {rate:.0f}/s → {step['events_per_s']}/s, "
                f"p99 {step['latency_ms']['p99']} ms, missed {step['missed']}, "
                f"{'held' if step['held'] else 'FAILED'}",
                file=sys.stderr,
            )
            if step["held"]:
                held = rate
            else:
                failed = rate
                stopped = "; ".join(step["failed_because"])
            if closes:
                break  # watchers are gone: later steps would measure fewer sockets
            if failed is None:
                rising += 1
                rate *= args.sat_factor
                continue
            # Bisect between the last held and the first failed rate (halve if none held).
            refining += 1
            nxt = math.sqrt(held * failed) if held else failed / 2
            if held and nxt / held < 1.05:
                break
            rate = nxt
            if not step["held"]:
                await asyncio.sleep(RECOVER_S)
    finally:
        if publish is not None:
            await publish.close()
        with contextlib.suppress(Exception):
            await lg.disconnect()
        h.stop_servers(servers)
    best = max((s for s in steps if s["held"]), key=lambda s: s["rate_nominal"], default=None)
    return {
        "target": cfg.target,
        "instances": cfg.instances,
        "watchers": cfg.watchers,
        "repeat": cfg.repeat,
        "connect": connect,
        "steps": steps,
        "held": None
        if best is None
        else {
            "rate_nominal": best["rate_nominal"],
            "events_per_s": best["events_per_s"],
            "deliveries_per_s": best["deliveries_per_s"],
            "latency_p99_ms": best["latency_ms"]["p99"],
        },
        "stopped_because": stopped,
        **extra,
    }


def verdict(ramps: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over each target's ramps of the highest rate held, and project/floor."""
    out: dict[str, Any] = {}
    for target in ("project", "floor"):
        mine = [r for r in ramps if r["target"] == target]
        if mine:
            held = [r["held"] or {} for r in mine]
            out[target] = {
                "held_events_per_s": median([x.get("events_per_s") for x in held]),
                "held_deliveries_per_s": median([x.get("deliveries_per_s") for x in held]),
                "ramps": len(mine),
            }
    if "project" in out and "floor" in out:
        p, f = out["project"], out["floor"]
        value = ratio(p["held_events_per_s"], f["held_events_per_s"])
        out["ratio_project_over_floor"] = {
            "events_per_s": value,
            "deliveries_per_s": ratio(p["held_deliveries_per_s"], f["held_deliveries_per_s"]),
        }
        out["target"] = f">= {TARGET_RATIO}"
        out["met"] = None if value is None else value >= TARGET_RATIO
    return out


async def main_async(args: argparse.Namespace, targets: list[str], opt: Options) -> dict[str, Any]:
    configs = [
        Config(target, k, w, args.sat_start, args.sat_step_seconds, rep)
        for k in int_list(args.instances)
        for w in int_list(args.watchers)
        for rep in range(args.repeats)
        for target in targets  # interleaved: A B A B
    ]
    summary = new_summary(
        "fanout",
        {
            "mode": "saturate",
            "events": "stream messages (a health change each) published straight to Redis: for "
            "the project with a seq from its own sequencer inside its bus envelope, exactly "
            "what its lease holder publishes; the floor gets the same message bare",
            "steps": f"from {args.sat_start:g}/s, x{args.sat_factor:g} per step, at most "
            f"{args.sat_steps} steps of {args.sat_step_seconds:g} s (+{args.drain:g} s drain), "
            f"then up to {args.sat_refine} bisecting steps; at most {args.sat_max_seconds:g} s "
            "of steps per ramp",
            "held": f"a step holds if delivery p99 <= {args.sat_p99_ms:g} ms, every watcher got "
            "every message by the end of the drain, and no socket closed",
            "events_per_s": "messages published / publishing span (the driver may fall short "
            "of the nominal rate)",
            "deliveries_per_s": "messages received by all watchers / publishing span",
            "connect": "every watcher connects at once at the start of each ramp; see connect_rate",
        },
    )
    ramps: list[dict[str, Any]] = []
    series: dict[str, tuple[list[float], list[float]]] = {}
    with Harness() as h:
        if "project" in targets:
            h.start_postgres(fsync=False)
            summary["demo_world"] = await h.prepare_database(demo=True)
        if args.redis_url:
            if "project" in targets:
                raise SystemExit("--redis-url is for floor-only runs")
            h.external_redis = args.redis_url
        else:
            h.start_valkey()
        with LoadGen(args.clients) as lg:
            for cfg in configs:
                ramp = await run_ramp(h, lg, cfg, opt, args)
                ramps.append(ramp)
                label = f"{cfg.target} K={cfg.instances} W={cfg.watchers} #{cfg.repeat}"
                series[label] = (
                    [s["events_per_s"] for s in ramp["steps"]],
                    [s["latency_ms"]["p99"] or math.nan for s in ramp["steps"]],
                )
    summary["ramps"] = ramps
    summary["saturation"] = verdict(ramps)
    summary["connect_rate"] = connect_rate_block(ramps, opt.connect_concurrency)
    print(f"# saturation: {summary['saturation']}", file=sys.stderr)
    print(f"# connect rate: {summary['connect_rate']}", file=sys.stderr)
    write_result(
        args.name,
        summary,
        args.out,
        chart=lambda png: charts.rate_vs_p99(
            png,
            series,
            limit_ms=args.sat_p99_ms,
            title=f"saturation: delivery p99 vs event rate, {args.watchers} watchers "
            f"({summary['machine']['cores']} cores)",
        ),
    )
    return summary


def add_args(p: argparse.ArgumentParser) -> None:
    """The `--saturate` options of bench.fanout."""
    g = p.add_argument_group("saturation (--saturate)")
    g.add_argument(
        "--saturate", action="store_true", help="step the event rate up until p99 > 1 s or a miss"
    )
    g.add_argument("--sat-start", type=float, default=40.0, help="first step's events/s")
    g.add_argument("--sat-factor", type=float, default=1.5, help="rate multiplier per step")
    g.add_argument("--sat-steps", type=int, default=9, help="most rising steps per ramp")
    g.add_argument("--sat-refine", type=int, default=2, help="bisecting steps after a failure")
    g.add_argument("--sat-step-seconds", type=float, default=3.0, help="publishing time per step")
    g.add_argument("--sat-p99-ms", type=float, default=1000.0, help="p99 a step may not exceed")
    g.add_argument(
        "--sat-max-seconds", type=float, default=100.0, help="most seconds of steps per ramp"
    )
