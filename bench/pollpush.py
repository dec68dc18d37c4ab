"""Push versus poll: server CPU seconds per 1,000 watchers per minute, and the ratio.

    python -m bench.pollpush --watchers 1000 --poll-window 10 --push-window 20

One project instance (PostgreSQL, Valkey) and W watchers, each with its own
user and watch session on creator_001's live channel. In every window below
the channel changes the same way, in real time: viewers from real sessions
joining and leaving (`--churn-rate` ops/s, which the server coalesces to at
most one `viewers` per second) and a stream-health change every
`--health-every` seconds. Three windows:

1. baseline: only those changes (no polling, no websockets). Its CPU rate is
   what causing the changes costs (REST joins/leaves, admin requests), the
   same in both worlds, and is subtracted from the other two.
2. poll (the old client): every watcher calls endpoint 36 (heartbeat) every
   30 s. Time is compressed: the W watchers each poll `--poll-rounds` times,
   spread evenly over `--poll-window` seconds per round. A minute of real
   polling is 2 polls per watcher, so
       poll = (CPU − baseline rate × window) / polls × 2 × 1,000.
3. push (the websocket client): the same W watchers hold a websocket each for
   `--push-window` seconds of real time and receive every change, plus
   server pings and socket liveness. Not in the window: stream-token
   refreshes (one per session per 8 minutes with 10-minute tokens). So
       push = (CPU − baseline rate × window) / window × 60 × 1,000 / W.

Push delivers every change within about a second; poll delivers a snapshot
every 30 s. PostgreSQL's CPU is reported beside each (not in the ratio).
Output: bench/results/pollpush.json and pollpush.png.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from array import array
from collections import Counter
from typing import Any, Final

from bench import charts
from bench._harness import (
    Harness,
    Meter,
    add_result_args,
    command_parser,
    merged_counts,
    merged_latencies,
    new_summary,
    percentiles,
    ratio,
    run_main,
    write_result,
)
from bench.fanout import LIVE, ProjectDriver, create_sessions_rest, create_sessions_sql
from bench.loadgen import LoadGen, Target, run_processes

POLL_PERIOD: Final = 30.0  # seconds between heartbeats of a polling client (endpoint 36)


async def poll_worker(arg: dict[str, Any]) -> dict[str, Any]:
    """Send each (url, token) GET at its scheduled time: paced, at most `inflight` at once."""
    import aiohttp

    schedule: list[tuple[float, str, str]] = arg["schedule"]
    lat = array("d")
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    sem = asyncio.Semaphore(arg.get("inflight", 256))
    cpu0 = time.process_time()
    connector = aiohttp.TCPConnector(limit=arg.get("inflight", 256))
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:

        async def one(at: float, url: str, token: str) -> None:
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            async with sem:
                t = time.perf_counter()
                try:
                    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                        await resp.read()
                        statuses[resp.status] += 1
                        lat.append(time.perf_counter() - t)
                except (aiohttp.ClientError, TimeoutError) as err:
                    errors[type(err).__name__] += 1

        await asyncio.gather(*(one(*item) for item in schedule))
    return {
        "lat": lat.tobytes(),
        "statuses": dict(statuses),
        "errors": dict(errors),
        "cpu_s": time.process_time() - cpu0,
    }


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("pollpush", __doc__)
    p.add_argument("--watchers", type=int, default=1000)
    p.add_argument(
        "--poll-window", type=float, default=10.0, help="seconds one compressed round takes"
    )
    p.add_argument("--poll-rounds", type=int, default=2)
    p.add_argument(
        "--push-window", type=float, default=20.0, help="real seconds of held websockets"
    )
    p.add_argument("--churn-rate", type=float, default=2.0)
    p.add_argument("--health-every", type=float, default=10.0)
    p.add_argument(
        "--baseline",
        type=float,
        default=None,
        help="seconds of the baseline window (default: --push-window)",
    )
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument("--sessions", choices=("rest", "sql"), default="rest")
    add_result_args(p, "pollpush")
    return p


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    w = args.watchers
    summary = new_summary(
        "pollpush",
        {
            "poll": f"each watcher GETs endpoint 36 every {POLL_PERIOD:g} s; compressed: "
            f"{args.poll_rounds} round(s) of {w} polls spread evenly over "
            f"{args.poll_window:g} s each; per minute = 2 polls per watcher",
            "push": f"{w} websockets held {args.push_window:g} s of real time; viewers churn "
            f"{args.churn_rate:g} ops/s, a stream-health change every {args.health_every:g} s, "
            "server pings; token refreshes (1 per session per 8 min) not in the window",
            "cpu": "server process user+system CPU (psutil), less the baseline rate (the same "
            "channel changes with no clients); normalized to 1,000 watchers and one minute",
            "sessions_created_via": args.sessions,
            "postgres_fsync": False,
        },
    )
    with Harness() as h:
        h.start_postgres(fsync=False)
        summary["demo_world"] = await h.prepare_database(demo=True)
        h.start_valkey()
        (server,) = h.start_project(1)
        backends = h.backend_procs()
        run_id = "p" + uuid.uuid4().hex[:6]
        users = [f"{run_id}_u{i}" for i in range(w)]
        if args.sessions == "sql":
            sids = await create_sessions_sql(h, users)
        else:
            sids = await create_sessions_rest(h, [server], users, 32)
        tokens = [h.token(u) for u in users]

        driver = ProjectDriver(h, [server], run_id)
        health_rate = 1.0 / args.health_every

        async def changes(seconds: float, t0: float) -> dict[str, Any]:
            """The channel's changes for `seconds` from t0; returns when the time is over."""
            done = await driver.drive(health_rate, seconds, args.churn_rate, t0)
            remaining = t0 + seconds - time.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
            return done

        # -- baseline ------------------------------------------------------------------------
        base_s = args.baseline or args.push_window
        t0 = time.time() + 0.2
        meter = Meter([server.ps], backends).start()
        base_driver = await changes(base_s, t0)
        base_w = meter.stop()
        base_rate = base_w.server_cpu_s / base_w.wall_s
        summary["baseline"] = {
            **base_w.as_dict(),
            "driver": base_driver,
            "server_cpu_s_per_s": round(base_rate, 5),
        }

        # -- poll ------------------------------------------------------------------------------
        start_at = time.time() + 3.0  # client processes start first, then send on schedule
        schedule = []
        for r in range(args.poll_rounds):
            for i in range(w):
                at = start_at + r * args.poll_window + (i / w) * args.poll_window
                schedule.append(
                    (at, f"{server.url}{LIVE}/heartbeat?session_id={sids[i]}", tokens[i])
                )
        shares = [{"schedule": schedule[k :: args.clients]} for k in range(args.clients)]
        task = asyncio.ensure_future(
            run_processes(
                "bench.pollpush:poll_worker",
                shares,
                timeout=args.poll_rounds * args.poll_window + 60,
            )
        )
        await asyncio.sleep(max(start_at - time.time(), 0))
        meter = Meter([server.ps], backends).start()
        poll_driver = await changes(args.poll_rounds * args.poll_window, start_at)
        results = await task
        poll_w = meter.stop()
        lat = merged_latencies(results)
        statuses = merged_counts(results, "statuses")
        polls = int(lat.size)
        poll_net = poll_w.server_cpu_s - base_rate * poll_w.wall_s
        per_poll = poll_net / polls if polls else None
        poll_per_1000_min = per_poll * 2 * 1000 if per_poll is not None else None
        summary["poll"] = {
            **poll_w.as_dict(),
            "driver": poll_driver,
            "polls": polls,
            "statuses": {str(k): v for k, v in statuses.items()},
            "latency_ms": percentiles(lat),
            "server_cpu_us_per_poll": round(per_poll * 1e6, 1) if per_poll is not None else None,
            "postgres_cpu_us_per_poll": round(poll_w.backend_cpu_s / polls * 1e6, 1)
            if polls
            else None,
            "loadgen_cpu_s": round(sum(r["cpu_s"] for r in results), 3),
            "server_cpu_s_per_1000_watchers_per_min": round(poll_per_1000_min, 4)
            if poll_per_1000_min is not None
            else None,
        }

        # -- push ------------------------------------------------------------------------------
        with LoadGen(args.clients) as lg:
            targets = [
                Target("127.0.0.1", server.port, f"{LIVE}/ws?session_id={sid}&access_token={tok}")
                for sid, tok in zip(sids, tokens, strict=True)
            ]
            connect = await lg.connect(targets)
            await asyncio.sleep(1.0)
            t0 = time.time() + 0.2
            await lg.measure(t0)
            meter = Meter([server.ps], backends).start()
            push_driver = await changes(args.push_window, t0)
            push_w = meter.stop()
            deliveries = await lg.collect(time.time())
        push_net = push_w.server_cpu_s - base_rate * push_w.wall_s
        held = connect["connected"]
        # No figure at all rather than a made-up one when the websockets could not be opened.
        push_per_1000_min = push_net / push_w.wall_s * 60 * 1000 / held if held else None
        summary["push"] = {
            **push_w.as_dict(),
            "connect": connect,
            "driver": push_driver,
            "deliveries": deliveries.deliveries,
            "broadcasts_by_type": deliveries.by_type(),
            "missed": deliveries.missed(),
            "duplicated": deliveries.dups,
            "pings": deliveries.pings,
            "latency_ms": percentiles(deliveries.latencies),
            "loadgen_cpu_s": round(deliveries.loadgen_cpu_s, 3),
            "server_cpu_s_per_1000_watchers_per_min": round(push_per_1000_min, 4)
            if push_per_1000_min is not None
            else None,
            "complete": held == w,
        }
    summary["ratio_poll_over_push"] = ratio(poll_per_1000_min, push_per_1000_min)
    write_result(
        args.name,
        summary,
        args.out,
        chart=lambda png: charts.grouped_bars(
            png,
            ["poll (endpoint 36 every 30 s)", "push (websocket)"],
            {"server CPU s per 1,000 watchers per minute": [poll_per_1000_min, push_per_1000_min]},
            title=f"push vs poll, {w} watchers ({summary['machine']['cores']} cores)",
            ylabel="CPU seconds / 1,000 watchers / minute",
        ),
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_main(main_async(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
