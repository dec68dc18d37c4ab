"""`python -m bench.scale --quick` runs end to end and writes a summary with the expected figures.

Real PostgreSQL (this test's database) and the test Valkey; tiny sizes. No
timing is asserted: speed is measured in bench/, not judged in tests. What is
checked is that the counts it read were exact (the benchmark asserts that
itself) and that every figure the README and docs/SCALE.md cite is present
and sane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from store.embedded import EmbeddedValkey
from tests.conftest import ROOT


def test_scale_quick_writes_the_expected_summary(
    database_url: str, valkey: EmbeddedValkey, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.scale",
            "--quick",
            "--database-url",
            database_url,
            "--redis-url",
            valkey.url,
            "--out",
            str(tmp_path),
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout)
    assert summary == json.loads((tmp_path / "scale.json").read_text())
    assert (tmp_path / "scale.png").stat().st_size > 1000
    assert summary["bench"] == "scale" and summary["quick"] is True

    configs = summary["configs"]
    assert {(c["watchers"], c["instances"]) for c in configs} == {
        (200, 2),
        (200, 5),
        (1000, 2),
        (1000, 5),
    }
    for c in configs:
        lat = c["latency_us"]
        for kind in ("share_refresh", "share_flush", "alive", "counts", "counts_mix"):
            assert lat[kind]["n"] > 0
            assert 0 < lat[kind]["p50"] <= lat[kind]["p99"] <= lat[kind]["max"]
        per_s = c["socket_watchers_per_s"]
        assert per_s["total_ms"] > 0
        assert abs(per_s["total_ms"] - per_s["redis_ms"] - per_s["postgres_ms"]) < 0.01
        assert per_s["calls_per_s"]["share_refresh"] == c["instances"] / 25.0
        assert c["read_of_counts_ms"]["p50"] > 0
        assert c["churn_per_s"]["flushes_per_s"] <= 20 * c["instances"]
        pollers = c["pollers_per_s"]["batch_1"]
        assert pollers["pollers"] == c["watchers"] // 10
        assert pollers["heartbeats_per_s"] == round(c["watchers"] // 10 / 30, 1)
    for size in ("200", "1000"):
        life = summary["lifecycle_us"][size]
        for kind in ("poll", "beat_batch_1", "claim_batch_1", "release_batch_8", "create_session"):
            assert life[kind]["mean"] > 0
    head = summary["headline"]
    assert head["watchers"] == 1000 and head["instances"] == 5
    assert isinstance(head["socket_ms_per_s_met"], bool)
    assert isinstance(head["read_of_counts_met"], bool)
