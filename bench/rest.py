"""REST throughput: requests/s and latency of endpoints 28, 30 and 36 against bare aiohttp.

    python -m bench.rest --concurrency 64 --duration 5 --repeats 2

One project instance (real PostgreSQL with the demo world, real Valkey) and a
bare aiohttp hello-world on uvloop (`python -m bench.rest hello --port P`,
the ceiling of any aiohttp handler) run side by side. Each endpoint is loaded
for `--duration` seconds at `--concurrency` keep-alive connections, after a
one-second warm-up, in the order hello, 28, 30, 36, repeated `--repeats`
times (interleaved, so host drift hits all alike); figures are medians over
the repeats and each endpoint's requests/s is also given as a ratio of
hello-world's.

Load generator: wrk (a well-kept C load generator) when it is on PATH;
otherwise a fallback of aiohttp client loops in `--clients` processes. The
JSON says which was used; the fallback is slower than wrk, so figures from
different tools are not comparable.

Endpoint 28 and 30 are public and requested without a token; 36 carries the
bearer of the user who owns the session. Output: bench/results/rest.json and
rest.png.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench import charts
from bench._harness import (
    Harness,
    Meter,
    Profiler,
    ServerProc,
    add_result_args,
    command_parser,
    median,
    merged_counts,
    merged_latencies,
    new_summary,
    percentiles,
    ratio,
    run_main,
    write_result,
)
from bench.loadgen import run_processes
from store.embedded import free_port

LIVE: Final = "/creators/creator_001/channel/live"


def _hello_app() -> Any:
    from aiohttp import web

    body = b'{"status":"success","data":{"hello":"world"}}'

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/healthz", hello)
    return app


def serve_hello(port: int) -> None:
    """The bare aiohttp hello-world on uvloop, configured like the project (no access log)."""
    import uvloop
    from aiohttp import web

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(
        _hello_app(), host="127.0.0.1", port=port, loop=loop, access_log=None, print=lambda _: None
    )


# -- load generators ----------------------------------------------------------------------------

_UNITS: Final = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms) and error counts from `wrk --latency` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {p: _seconds(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.MULTILINE)}
    lat_line = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.MULTILINE)
    total = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests_per_s": round(rps, 1),
        "latency_ms": {
            "p50": round(pct["50"] * 1e3, 3),
            "p90": round(pct["90"] * 1e3, 3),
            "p99": round(pct["99"] * 1e3, 3),
            "max": round(_seconds(lat_line.group(3)) * 1e3, 3) if lat_line else None,
        },
        "requests": int(total.group(1)) if total else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


async def run_wrk(
    url: str, headers: dict[str, str], *, concurrency: int, duration: float, threads: int
) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(url)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=duration + 30
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr or proc.stdout}")
    result = parse_wrk(proc.stdout)
    result["loadgen_cpu_s"] = round(
        (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 3
    )
    return result


async def run_fallback(
    url: str, headers: dict[str, str], *, concurrency: int, duration: float, processes: int
) -> dict[str, Any]:
    start_at = time.time() + 1.5  # spawned processes import aiohttp first, then start together
    per = max(concurrency // processes, 1)
    results = await run_processes(
        "bench.loadgen:http_get_worker",
        [
            {
                "url": url,
                "headers": headers,
                "concurrency": per,
                "duration": duration,
                "start_at": start_at,
            }
            for _ in range(processes)
        ],
        timeout=duration + 60,
    )
    lat = merged_latencies(results)
    statuses = merged_counts(results, "statuses")
    wall = max(r["wall_s"] for r in results)
    return {
        "requests_per_s": round(lat.size / wall, 1),
        "latency_ms": percentiles(lat),
        "requests": int(lat.size),
        "non_2xx": sum(v for k, v in statuses.items() if not 200 <= k < 400),
        "socket_errors": sum(sum(r["errors"].values()) for r in results),
        "loadgen_cpu_s": round(sum(r["cpu_s"] for r in results), 3),
    }


# -- the invocation -----------------------------------------------------------------------------


async def _watch_session(h: Harness, server: ServerProc) -> tuple[str, str]:
    user = "bench_rest_user"
    token = h.token(user)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + LIVE + "/watch",
            json={"channel_id": "ch_101", "device_type": "web"},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        data = await resp.json(content_type=None)
        if resp.status != 200:
            raise RuntimeError(f"POST watch: {resp.status} {data}")
        return data["data"]["session"]["session_id"], token


async def _check(url: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("rest", __doc__)
    sub = p.add_subparsers(dest="command")
    hello = sub.add_parser("hello", help="run the bare aiohttp hello-world server")
    hello.add_argument("--port", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--clients", type=int, default=2, help="fallback client processes")
    p.add_argument("--tool", choices=("auto", "wrk", "aiohttp"), default="auto")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write py-spy flame graphs (SVG) of each measured window here",
    )
    add_result_args(p, "rest")
    return p


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "aiohttp"

    async def load(url: str, headers: dict[str, str], duration: float) -> dict[str, Any]:
        if tool == "wrk":
            return await run_wrk(
                url, headers, concurrency=args.concurrency, duration=duration, threads=args.threads
            )
        return await run_fallback(
            url, headers, concurrency=args.concurrency, duration=duration, processes=args.clients
        )

    summary = new_summary(
        "rest",
        {
            "load_generator": tool,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "repeats": args.repeats,
            "order": "hello, 28, 30, 36 per repeat",
            "server": "one project instance (1 process) with PostgreSQL and Valkey; hello-world: "
            "bare aiohttp on uvloop, one process",
            "postgres_fsync": False,
        },
    )
    summary["runs"] = []
    with Harness() as h:
        h.start_postgres(fsync=False)
        summary["demo_world"] = await h.prepare_database(demo=True)
        h.start_valkey()
        (project,) = h.start_project(1)
        port = free_port()
        hello = h.start_command(
            "hello", [sys.executable, "-m", "bench.rest", "hello", "--port", str(port)], port
        )
        session_id, token = await _watch_session(h, project)
        endpoints = {
            "hello": (hello, "/", {}),
            "28_channel_live": (project, LIVE, {}),
            "30_viewers": (project, LIVE + "/viewers", {}),
            "36_heartbeat": (
                project,
                f"{LIVE}/heartbeat?session_id={session_id}",
                {"Authorization": f"Bearer {token}"},
            ),
        }
        for name, (server, path, headers) in endpoints.items():
            status = await _check(server.url + path, headers)
            if status != 200:
                raise RuntimeError(f"{name}: GET {path} answered {status}")
        for rep in range(args.repeats):
            for name, (server, path, headers) in endpoints.items():
                url = server.url + path
                if args.warmup > 0:
                    await load(url, headers, args.warmup)
                with Profiler(args.profile, [server], args.duration, f"{name}-r{rep}") as profiler:
                    meter = Meter([server.ps]).start()
                    result = await load(url, headers, args.duration)
                    window = meter.stop()
                if args.profile is not None:
                    result["flame_graphs"] = profiler.files or profiler.note
                reqs = result["requests"] or 0
                result.update(
                    {
                        "endpoint": name,
                        "repeat": rep,
                        "server_cpu_s": round(window.server_cpu_s, 3),
                        "server_cpu_us_per_request": round(window.server_cpu_s / reqs * 1e6, 1)
                        if reqs
                        else None,
                        "machine_busy_pct": round(window.machine_busy_pct, 1),
                    }
                )
                summary["runs"].append(result)
                print(
                    f"# {name} rep {rep}: {result['requests_per_s']} req/s, "
                    f"p99 {result['latency_ms']['p99']} ms",
                    file=sys.stderr,
                )
    summary["endpoints"] = _aggregate(summary["runs"])
    names = list(summary["endpoints"])
    write_result(
        args.name,
        summary,
        args.out,
        chart=lambda png: charts.grouped_bars(
            png,
            names,
            {"requests/s": [summary["endpoints"][n]["requests_per_s"] for n in names]},
            title=f"REST requests/s at concurrency {args.concurrency} ({tool}, "
            f"{summary['machine']['cores']} cores)",
            ylabel="requests/s",
        ),
    )
    return summary


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = list(dict.fromkeys(r["endpoint"] for r in runs))
    for name in names:
        mine = [r for r in runs if r["endpoint"] == name]

        def med(get: Any, rows: list[dict[str, Any]] = mine) -> float | None:
            return median(get(r) for r in rows)

        out[name] = {
            "requests_per_s": med(lambda r: r["requests_per_s"]),
            "latency_p50_ms": med(lambda r: r["latency_ms"]["p50"]),
            "latency_p99_ms": med(lambda r: r["latency_ms"]["p99"]),
            "latency_max_ms": med(lambda r: r["latency_ms"]["max"]),
            "server_cpu_us_per_request": med(lambda r: r["server_cpu_us_per_request"]),
            "loadgen_cpu_s": med(lambda r: r["loadgen_cpu_s"]),
            "machine_busy_pct": med(lambda r: r["machine_busy_pct"]),
            "non_2xx": sum(r["non_2xx"] for r in mine),
            "socket_errors": sum(r["socket_errors"] for r in mine),
        }
    hello_rps = out.get("hello", {}).get("requests_per_s")
    for name, entry in out.items():
        if name != "hello":
            entry["ratio_to_hello_rps"] = ratio(entry["requests_per_s"], hello_rps)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "hello":
        serve_hello(args.port)
        return 0
    return run_main(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
