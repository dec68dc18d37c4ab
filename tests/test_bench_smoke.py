"""The benchmark harness itself works: floor + load generator, end to end, at toy size.

Runs `python -m bench.fanout` against the floor server on the test Valkey
(real processes, real sockets, real Redis pub/sub), then checks that every
published event reached every watcher exactly once and that the summary has
the figures the benchmarks report. No timing is asserted: speed is measured
in bench/, not judged in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from store.embedded import EmbeddedValkey
from tests.conftest import ROOT

WATCHERS = 20
RATE = 5
DURATION = 1

RUN_KEYS = {
    "target",
    "instances",
    "watchers",
    "connect",
    "latency_ms",
    "completion_ms",
    "broadcasts",
    "deliveries",
    "expected_deliveries",
    "deliveries_per_s",
    "missed",
    "duplicated",
    "seq_gaps",
    "server_cpu_s",
    "server_cpu_us_per_delivery",
    "rss_per_watcher_kib",
    "loadgen_cpu_s",
    "driver_cpu_s",
    "machine_busy_pct",
}


def _floors_on(redis_url: str) -> list[int]:
    """Floor servers of this Valkey that are still running, wherever they were reparented."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if "bench.floor" in cmd and redis_url in cmd:
            found.append(p.info["pid"])
    return found


def test_floor_and_loadgen_deliver_every_event_once(valkey: EmbeddedValkey, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.fanout",
            "--targets",
            "floor",
            "--instances",
            "1",
            "--watchers",
            str(WATCHERS),
            "--rate",
            str(RATE),
            "--duration",
            str(DURATION),
            "--idle",
            "0.2",
            "--drain",
            "3",
            "--clients",
            "1",
            "--redis-url",
            valkey.url,
            "--out",
            str(tmp_path),
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    summary = json.loads(proc.stdout)
    assert summary == json.loads((tmp_path / "fanout.json").read_text())
    assert (tmp_path / "fanout.png").stat().st_size > 1000
    assert {"machine", "method", "runs", "configs", "chart"} <= summary.keys()

    (run,) = summary["runs"]
    assert RUN_KEYS <= run.keys(), RUN_KEYS - run.keys()
    assert run["connect"]["connected"] == WATCHERS
    published = RATE * DURATION + DURATION  # stream events plus one viewers message per second
    assert run["broadcasts"] == published
    assert run["expected_deliveries"] == WATCHERS * published
    assert run["deliveries"] == WATCHERS * published
    assert run["missed"] == 0
    assert run["duplicated"] == 0
    assert run["seq_gaps"] == 0
    assert run["completion_ms"]["complete_broadcasts"] == published
    assert {"p50", "p90", "p99", "max"} <= run["latency_ms"].keys()
    assert run["latency_ms"]["p50"] is not None and run["latency_ms"]["p50"] >= 0

    (config,) = summary["configs"]
    assert config["floor"]["missed"] == 0
    # The harness stopped the servers it started: none is left behind.
    assert _floors_on(valkey.url) == []


def _fanout(*args: str, out: Path, timeout: float = 100) -> dict[str, Any]:
    """Run `python -m bench.fanout ARGS --out OUT`; its JSON summary (also checks the file)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fanout", *args, "--clients", "1", "--out", str(out)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout)
    assert summary["chart"].endswith(".png")
    assert (out / summary["chart"]).stat().st_size > 1000
    return summary


def test_connect_only_reports_the_connect_rate(valkey: EmbeddedValkey, tmp_path: Path) -> None:
    summary = _fanout(
        "--connect-only",
        "--targets",
        "floor",
        "--instances",
        "1",
        "--watchers",
        str(WATCHERS),
        "--repeats",
        "2",
        "--redis-url",
        valkey.url,
        out=tmp_path,
    )
    assert summary == json.loads((tmp_path / "fanout_connect.json").read_text())
    assert [r["connect"]["connected"] for r in summary["runs"]] == [WATCHERS, WATCHERS]
    block = summary["connect_rate"]
    assert block["in_flight_per_loadgen_process"] == "all at once"
    assert block["floor"]["runs"] == 2
    assert block["floor"]["failed"] == 0
    assert block["floor"]["connect_rate_per_s"] > 0
    assert _floors_on(valkey.url) == []


def test_saturation_ramps_project_and_floor(tmp_path: Path) -> None:
    """Both targets, a tiny ramp: the project's events (published as its origin would, into
    its bus envelope) reach every watcher, and the summary has the verdict and connect rate."""
    summary = _fanout(
        "--saturate",
        "--compare-floor",
        "--instances",
        "1",
        "--watchers",
        str(WATCHERS),
        "--sessions",
        "sql",
        "--sat-start",
        "20",
        "--sat-steps",
        "2",
        "--sat-refine",
        "0",
        "--sat-step-seconds",
        "0.5",
        "--drain",
        "0.5",
        out=tmp_path,
    )
    assert summary == json.loads((tmp_path / "fanout_saturation.json").read_text())
    assert [r["target"] for r in summary["ramps"]] == ["project", "floor"]
    for ramp in summary["ramps"]:
        assert ramp["connect"]["connected"] == WATCHERS
        assert [s["rate_nominal"] for s in ramp["steps"]] == [20.0, 30.0]
        for step in ramp["steps"]:
            assert step["published"] == int(step["rate_nominal"] * 0.5)
            assert step["deliveries"] == WATCHERS * step["published"], step
            assert step["missed"] == 0 and step["duplicated"] == 0 and step["held"], step
        assert ramp["held"]["rate_nominal"] == 30.0
    verdict = summary["saturation"]
    assert {"project", "floor", "ratio_project_over_floor", "target", "met"} <= verdict.keys()
    assert verdict["ratio_project_over_floor"]["events_per_s"] > 0
    assert summary["connect_rate"]["ratio_project_over_floor"] is not None
