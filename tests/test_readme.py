"""The README is true: its settings table, its try-it sequence and its snippets, run as written.

The snippets run against real servers this test starts, with exactly these
substitutions, made on the text and nothing else:

- `localhost:8080` / `127.0.0.1:8080` become the test server's address, and
  the fixed ports of the two-instance section (5499, 6399, 8081, 8082) become
  free ones, so the suite runs beside anything else on the machine;
- `.venv/bin/` becomes the directory of the interpreter running the tests
  (the same `.venv` under `make test`);
- `make serve &` and `make install` are left out: the test starts the server
  itself and the suite's venv is already installed.

The two-instance section runs in an empty directory where an embedded
PostgreSQL already holds `.droptv/pgdata`, as `make serve` would, to show the
section does not collide with a running `make serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from server.cli import build_parser
from server.config import Settings
from store.embedded import EmbeddedPostgres, free_port
from tests.conftest import ROOT, TEST_SECRET, ServerFactory

README = (ROOT / "README.md").read_text()
BIN = str(Path(sys.executable).parent) + "/"
SNIPPET_TIMEOUT = 60.0


def _blocks(lang: str) -> list[tuple[str, str]]:
    """(heading above, body) of every fenced block in `lang`."""
    found = []
    heading = ""
    for part in re.split(r"(^```[a-z]*\n.*?^```$)", README, flags=re.DOTALL | re.MULTILINE):
        if part.startswith("```"):
            head, _, body = part.partition("\n")
            if head == "```" + lang:
                found.append((heading, body.rsplit("```", 1)[0]))
        else:
            headings = re.findall(r"^#+ (.+)$", part, flags=re.MULTILINE)
            heading = headings[-1] if headings else heading
    return found


def _block_under(heading: str, lang: str = "sh") -> str:
    return next(body for head, body in _blocks(lang) if head.startswith(heading))


def _local(text: str, port: int) -> str:
    text = re.sub(r"(localhost|127\.0\.0\.1):8080\b", f"127.0.0.1:{port}", text)
    return text.replace(".venv/bin/", BIN)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, **extra}


async def _run(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    """Run to completion (bounded); then stop the background jobs it left; its output.

    Output goes to a file, not a pipe: the jobs a snippet leaves running (servers)
    would hold a pipe open, and the snippet is done when its shell exits.
    """
    with tempfile.TemporaryFile() as log:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its background jobs form a group we stop together
        )
        try:
            await asyncio.wait_for(proc.wait(), SNIPPET_TIMEOUT)
        except TimeoutError:
            pass
        finally:
            await asyncio.to_thread(_stop_group, proc.pid)
        await proc.wait()
        log.seek(0)
        text = log.read().decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    return text


def _stop_group(pgid: int, timeout: float = 20.0) -> None:
    """SIGTERM the snippet's process group (servers drain), SIGKILL what is left after timeout."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def test_every_setting_and_serve_flag_is_in_the_readme() -> None:
    rows = [line for line in README.splitlines() if line.startswith("| ")]
    names = {name.strip() for row in rows for name in row.split("|")[1].split("/")}
    missing = [f.name for f in dataclasses.fields(Settings) if f.name not in names]
    assert not missing, f"settings missing from the README's tables: {missing}"
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    serve = sub.choices["serve"]  # type: ignore[index]
    flags = {opt for a in serve._actions for opt in a.option_strings if opt.startswith("--")}
    undocumented = sorted(f for f in flags - {"--help"} if f not in README)
    assert not undocumented, f"serve flags missing from the README: {undocumented}"


async def test_the_try_it_sequence_runs_as_written(
    start_server: ServerFactory, demo_db: asyncpg.Pool
) -> None:
    server = await start_server()
    script = _block_under("Try it")
    assert script.startswith("make serve &") and "until curl -sf localhost:8080/readyz" in script
    script = _local(script.split("\n", 1)[1], server.port)
    out = await _run(["bash", "-euo", "pipefail", "-c", script], _env(JWT_SECRET=TEST_SECRET))
    assert '"session_valid":true' in out, out[:2000]
    assert '"status":"error"' not in out, out[:4000]
    assert out.count('"status":"success"') >= 6
    assert '"openapi":"3.1' in out


async def test_the_other_curl_snippets_run_as_written(
    start_server: ServerFactory, demo_db: asyncpg.Pool
) -> None:
    server = await start_server()
    snippets = [
        body
        for _, body in _blocks("sh")
        if body.startswith("ADMIN=$(.venv/bin/droptv-live token") and "localhost:8080" in body
    ]
    assert len(snippets) >= 2
    for body in snippets:
        out = await _run(
            ["bash", "-euo", "pipefail", "-c", _local(body, server.port)],
            _env(JWT_SECRET=TEST_SECRET),
        )
        assert '"status":"success"' in out and '"status":"error"' not in out, out[:2000]


async def test_the_python_snippets_run_as_written(
    start_server: ServerFactory, demo_db: asyncpg.Pool, tmp_path: Path
) -> None:
    server = await start_server()
    snippets = [body for _, body in _blocks("python")]
    assert snippets
    for n, body in enumerate(snippets):
        path = tmp_path / f"snippet_{n}.py"
        path.write_text(_local(body, server.port))
        out = await _run([sys.executable, str(path)], _env(JWT_SECRET=TEST_SECRET))
        assert "hello" in out, out[:2000]


async def test_the_two_instance_section_runs_beside_a_make_serve(tmp_path: Path) -> None:
    """Beside an embedded PostgreSQL on ./.droptv/pgdata (what `make serve` holds), as a newcomer."""
    held = await asyncio.to_thread(EmbeddedPostgres(tmp_path / ".droptv" / "pgdata").start)
    try:
        script = _block_under("Many instances")
        assert script.startswith("make install\n")
        script = script.split("\n", 1)[1]
        for fixed in ("5499", "6399", "8081", "8082"):
            script = script.replace(fixed, str(free_port()))
        script = script.replace(".venv/bin/", BIN)
        env = _env()
        env.pop("JWT_SECRET", None)  # a newcomer's shell: the development secret everywhere
        out = await _run(["bash", "-euo", "pipefail", "-c", script], env, cwd=tmp_path)
    finally:
        await asyncio.to_thread(held.stop)
    streams = [line.split() for line in out.splitlines() if " stream " in line]
    assert len(streams) == 2, out[-4000:]
    assert len({port for port, *_ in streams}) == 2  # one watcher on each instance
    assert len({seq for _, _, seq, _ in streams}) == 1  # the same seq on both
    assert all(line[-1] == "fair" for line in streams)
