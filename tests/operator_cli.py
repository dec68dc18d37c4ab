"""Run `python -m server …` as an operator would, and read the one line it fails with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Variables of the developer's shell that would change what a test sees.
_SCRUB = ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "PORT")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith("DROPTV_")}
    env["DROPTV_LOG_LEVEL"] = "INFO"
    return {**env, **extra}


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 20.0, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        check=False,
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn(
    *args: str, env: dict[str, str], log_path: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "server", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def one_line(stderr: str) -> str:
    """The single `droptv-live: …` line of a failed start; no traceback around it."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("droptv-live: ")]
    assert len(lines) == 1, stderr
    return lines[0].removeprefix("droptv-live: ")
