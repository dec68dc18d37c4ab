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
