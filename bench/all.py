"""Run the whole benchmark set (`make bench`) at a size that fits 12 minutes on 2 cores.

    python -m bench.all            # the set, results in bench/results/
    python -m bench.all --quick    # a tiny run of each, to check the machinery (bench/results/tmp/)

Each benchmark runs as its own process (`python -m bench.<name> ...`) with a
time limit; one that fails does not stop the others. Each writes
bench/results/<name>.json and <name>.png; this writes bench/results/all.json:
the headline figures next to the targets of issues #5 and #10, with the exact commands
that produced them and how long each took.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

from bench._harness import RESULTS, ROOT, command_parser, machine_info, stamp, write_result

# name → arguments; sized so that the set takes well under 10 minutes on 2 cores.
FULL: Final[dict[str, list[str]]] = {
    "fanout": [
        "--instances",
        "1,2",
        "--watchers",
        "2000",
        "--rate",
        "5",
        "--duration",
        "8",
        "--compare-floor",
        "--repeats",
        "2",
        "--sessions",
        "sql",
    ],
    "fanout_10k": [
        "--instances",
        "2",
        "--watchers",
        "10000",
        "--rate",
        "5",
        "--duration",
        "8",
        "--compare-floor",
        "--repeats",
        "1",
        "--sessions",
        "sql",
        "--name",
        "fanout_10k",
    ],
    # Issue 10: the highest event rate held at 1,000 watchers, and connects/s, against the floor.
    "fanout_saturation": [
        "--saturate",
        "--instances",
        "2",
        "--watchers",
        "1000",
        "--compare-floor",
        "--sessions",
        "sql",
    ],
    "fanout_connect": [
        "--connect-only",
        "--instances",
        "2",
        "--watchers",
        "5000",
        "--compare-floor",
        "--repeats",
        "2",
        "--sessions",
        "sql",
    ],
    "pollpush": [
        "--watchers",
        "1000",
        "--poll-window",
        "10",
        "--poll-rounds",
        "2",
        "--push-window",
        "20",
    ],
    "ingest": ["--batches", "1,50,500", "--clients", "32", "--duration", "5"],
    "rest": ["--concurrency", "64", "--duration", "5", "--repeats", "2"],
    # Issue 10: presence cost per second and per read at 10k-1M synthetic watchers.
    "scale": [],
}
QUICK: Final[dict[str, list[str]]] = {
    "fanout": [
        "--instances",
        "1",
        "--watchers",
        "100",
        "--rate",
        "5",
        "--duration",
        "2",
        "--compare-floor",
        "--idle",
        "0.5",
        "--drain",
        "1",
        "--origin",
        "1",
    ],
    "fanout_saturation": [
        "--saturate",
        "--instances",
        "1",
        "--watchers",
        "100",
        "--compare-floor",
        "--sat-steps",
        "2",
        "--sat-refine",
        "0",
        "--sat-step-seconds",
        "1",
        "--drain",
        "1",
    ],
    "fanout_connect": [
        "--connect-only",
        "--instances",
        "1",
        "--watchers",
        "200",
        "--compare-floor",
    ],
    "pollpush": [
        "--watchers",
        "100",
        "--poll-window",
        "2",
        "--poll-rounds",
        "1",
        "--push-window",
        "3",
        "--baseline",
        "2",
    ],
    "ingest": ["--batches", "1,50", "--clients", "8", "--duration", "2"],
    "rest": ["--concurrency", "16", "--duration", "1", "--repeats", "1", "--warmup", "0"],
    "scale": ["--quick"],
}
TIME_LIMIT: Final = 300.0


def _module(name: str) -> str:
    return "bench." + name.split("_")[0]


def run(name: str, args: list[str], out: Path, limit: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", _module(name), *args, "--out", str(out)]
    shown = "python -m " + _module(name) + " " + " ".join(args)
    print(f"## {shown}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        stdout, _ = proc.communicate(timeout=limit)
    except BaseException as err:
        # SIGTERM first: the benchmark's harness then stops every server and database it started.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        if isinstance(err, subprocess.TimeoutExpired):
            return {"command": shown, "ok": False, "error": f"timed out after {limit:g} s"}
        raise
    took = round(time.monotonic() - t0, 1)
    if proc.returncode != 0:
        return {"command": shown, "ok": False, "seconds": took, "error": f"exit {proc.returncode}"}
    return {"command": shown, "ok": True, "seconds": took, "summary": json.loads(stdout)}


def _get(data: Any, *path: Any) -> Any:
    for key in path:
        if data is None:
            return None
        if isinstance(key, int):
            data = data[key] if isinstance(data, list) and len(data) > key else None
        else:
            data = data.get(key) if isinstance(data, dict) else None
    return data


def _config(summary: dict[str, Any] | None, instances: int, watchers: int) -> dict[str, Any] | None:
    for entry in _get(summary, "configs") or []:
        if entry["instances"] == instances and entry["watchers"] == watchers:
            return dict(entry)
    return None


def headline(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The figures issue #5 judges, each with its target and whether this run met it."""
    fan = _get(results, "fanout_10k", "summary") or _get(results, "fanout", "summary")
    biggest = max(
        _get(fan, "configs") or [{}], key=lambda c: (c.get("watchers", 0), c.get("instances", 0))
    )
    ratio = biggest.get("ratio_project_over_floor") or {}
    project = biggest.get("project") or {}
    checks: dict[str, Any] = {
        "fanout_config": {
            "instances": biggest.get("instances"),
            "watchers": biggest.get("watchers"),
        },
        "cpu_per_delivery_vs_floor": {
            "value": ratio.get("server_cpu_us_per_delivery"),
            "target": "<= 1.3",
        },
        "cpu_per_delivery_net_of_origin_vs_floor": {
            "value": ratio.get("server_cpu_us_per_delivery_net_of_origin"),
            "target": "<= 1.3",
            "note": "project CPU less what its admin/session requests cost (the floor gets events free)",
        },
        "completion_p99_vs_floor": {"value": ratio.get("completion_p99_ms"), "target": "<= 1.5"},
        "missed_and_duplicated": {
            "value": [project.get("missed"), project.get("duplicated")],
            "target": "0 and 0",
        },
        "rss_per_watcher_kib": {"value": project.get("rss_per_watcher_kib"), "target": "<= 12"},
        "push_cheaper_than_poll": {
            "value": _get(results, "pollpush", "summary", "ratio_poll_over_push"),
            "target": ">= 10",
        },
        "ingest_events_per_s_batch_50": {
            "value": next(
                (
                    r["events_per_s"]
                    for r in _get(results, "ingest", "summary", "runs") or []
                    if r["batch"] == 50
                ),
                None,
            ),
            "target": ">= 50000",
        },
        "ingest_acked_missing": {
            "value": _get(results, "ingest", "summary", "acked_missing_total"),
            "target": "0",
        },
        "saturation_events_per_s_vs_floor": {
            "value": _get(
                results,
                "fanout_saturation",
                "summary",
                "saturation",
                "ratio_project_over_floor",
                "events_per_s",
            ),
            "target": ">= 0.85",
            "note": "highest event rate with delivery p99 <= 1 s and nothing missed",
        },
        "connect_rate_vs_floor": {
            "value": _get(
                results, "fanout_connect", "summary", "connect_rate", "ratio_project_over_floor"
            ),
            "target": ">= 0.5",
            "note": "every watcher connecting at once, until its hello",
        },
        "rest_36_vs_hello_rps": {
            "value": _get(
                results, "rest", "summary", "endpoints", "36_heartbeat", "ratio_to_hello_rps"
            ),
            "target": ">= 0.5",
        },
    }
    limits = {
        "cpu_per_delivery_vs_floor": (None, 1.3),
        "cpu_per_delivery_net_of_origin_vs_floor": (None, 1.3),
        "completion_p99_vs_floor": (None, 1.5),
        "rss_per_watcher_kib": (None, 12.0),
        "push_cheaper_than_poll": (10.0, None),
        "ingest_events_per_s_batch_50": (50000.0, None),
        "rest_36_vs_hello_rps": (0.5, None),
        "saturation_events_per_s_vs_floor": (0.85, None),
        "connect_rate_vs_floor": (0.5, None),
    }
    for key, (low, high) in limits.items():
        value = checks[key]["value"]
        checks[key]["met"] = (
            None
            if value is None
            else ((low is None or value >= low) and (high is None or value <= high))
        )
    mad = checks["missed_and_duplicated"]["value"]
    checks["missed_and_duplicated"]["met"] = None if None in mad else mad == [0, 0]
    missing = checks["ingest_acked_missing"]["value"]
    checks["ingest_acked_missing"]["met"] = None if missing is None else missing == 0
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("all", __doc__)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the machinery only"
    )
    parser.add_argument("--only", help="comma list of benchmark names to run")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default bench/results (bench/results/tmp with --quick)",
    )
    args = parser.parse_args(argv)
    args.out = args.out or (RESULTS / "tmp" if args.quick else RESULTS)
    plan = QUICK if args.quick else FULL
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")}
        plan = {k: v for k, v in plan.items() if k in wanted}
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, bench_args in plan.items():
            results[name] = run(name, bench_args, args.out, TIME_LIMIT)
            state = "ok" if results[name]["ok"] else results[name]["error"]
            print(f"## {name}: {state} ({results[name].get('seconds', '?')} s)", file=sys.stderr)
    except KeyboardInterrupt:
        print("## interrupted", file=sys.stderr)
        return 130
    summary = {
        "bench": "all",
        "started_at": stamp(),
        "machine": machine_info(),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "benchmarks": {
            name: {k: v for k, v in r.items() if k != "summary"} for name, r in results.items()
        },
        "headline": headline(results),
    }
    write_result("all", summary, args.out)
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
