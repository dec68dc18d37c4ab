"""The watch page in a real headless Chromium against a real server process.

tests/browser/watch.mjs drives /usr/bin/chromium through playwright-core (no
browser download) and reports each step; this test acts on the server between
steps: the page loads and shows the count; a watcher joining from Python
raises it on the page within 3 s; a phone-sized page joins too; screenshots
of both viewports (to docs/ under `make browser-test`); the admin taking the stream offline shows
offline on both. Skipped, saying why, without Chromium, node or the driver's
node_modules (`make browser-test` installs them).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import ROOT, ServerFactory, auth, token
from tests.wsutil import Watcher, start_watch

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
DRIVER = ROOT / "tests" / "browser"
NODE = shutil.which("node")
# `make browser-test` sets DROPTV_UPDATE_SCREENSHOTS=1 to refresh the committed screenshots in
# docs/; other runs (make test) write them to the test's temporary directory.
UPDATE_SHOTS = os.environ.get("DROPTV_UPDATE_SCREENSHOTS") == "1"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists()
    or NODE is None
    or not (DRIVER / "node_modules" / "playwright-core").exists(),
    reason=f"browser test needs {CHROMIUM}, node and tests/browser/node_modules: "
    "run `make browser-test` (installs Debian's chromium and npm ci)",
)


class Driver:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def step(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            self.proc.kill()
            pytest.fail(f"no {name!r} from the driver within {timeout} s: {await self.stderr()}")
        assert line, "the driver exited: " + await self.stderr()
        msg: dict[str, Any] = json.loads(line)
        assert msg["step"] == name, msg
        return msg

    async def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode(errors="replace")


@pytest.mark.timeout(90)
async def test_watch_page_in_chromium(
    start_server: ServerFactory, demo_db: asyncpg.Pool, tmp_path: Path
) -> None:
    assert NODE is not None
    server = await start_server()
    shots_dir = ROOT / "docs" if UPDATE_SHOTS else tmp_path
    shots_dir.mkdir(exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(DRIVER / "watch.mjs"),
        cwd=DRIVER,
        env={
            **os.environ,
            "DROPTV_BASE": server.url,
            "DROPTV_TOKEN_A": token("web_alice"),
            "DROPTV_TOKEN_B": token("web_bob"),
            "DROPTV_SHOTS": str(shots_dir),
            "CHROMIUM": str(CHROMIUM),
        },
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    driver = Driver(proc)
    try:
        async with aiohttp.ClientSession() as http:
            loaded = await driver.step("loaded")
            assert loaded["badge"] == "LIVE" and loaded["count"] == "1"
            assert loaded["now"] == "Behind the Laughs"
            assert loaded["next"] == "Chris Spencer Presents"
            assert ":" in loaded["countdown"] and ":" in loaded["expiry"]
            assert loaded["url"].startswith("https://cdn.droptv.com/streams/stream_abc123/")
            assert "token=" in loaded["url"] and loaded["health"] == "good"
            assert loaded["refreshes"] >= 1

            sid = await start_watch(http, server.url, "py_watcher")
            watcher = await Watcher.connect(http, server.ws_url, sid, "py_watcher")
            await watcher.next("hello")
            await driver.go()
            raised = await driver.step("raised")
            assert raised["count"] == "2" and raised["ms"] <= 3000

            shots = await driver.step("screenshots")
            for path in (shots["desktop"], shots["phone"]):
                assert Path(path).stat().st_size > 10_000

            async with http.delete(
                f"{server.url}/admin/channels/ch_101/live", headers=auth("ops", admin=True)
            ) as resp:
                assert resp.status == 200
            await driver.go()
            offline = await driver.step("offline")
            assert offline["overlay"] == "Offline"
            assert offline["errors"] == [], offline["errors"]
            assert await watcher.wait_closed() == 4009
        assert proc.stdin is not None
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 15) == 0, await driver.stderr()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
