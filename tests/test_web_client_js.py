"""The JavaScript client's own tests (clients/js/test/, node's built-in runner) against real servers.

Two `droptv-live serve` processes on this test's database with the demo world;
node gets their URLs, the JWT secret (it mints bearers as `droptv-live token`
does) and their pids (its drain test sends the first one SIGTERM). Skipped
when node is not installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil

import asyncpg
import pytest

from tests.conftest import ROOT, TEST_SECRET, ServerFactory

JS = ROOT / "clients" / "js"
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.timeout(120)
async def test_js_client_node_tests(start_server: ServerFactory, demo_db: asyncpg.Pool) -> None:
    assert NODE is not None
    first = await start_server()
    second = await start_server()
    tests = sorted(str(p.relative_to(JS)) for p in (JS / "test").glob("*.test.mjs"))
    proc = await asyncio.create_subprocess_exec(
        NODE,
        "--experimental-websocket",
        "--test",
        "--test-reporter=tap",
        *tests,
        cwd=JS,
        env={
            **os.environ,
            "DROPTV_TEST_URLS": f"{first.url},{second.url}",
            "DROPTV_TEST_SECRET": TEST_SECRET,
            "DROPTV_TEST_PIDS": f"{first.proc.pid},{second.proc.pid}",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail("node tests timed out:\n" + out.decode(errors="replace"))
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "# fail 0" in text and "# skipped 0" in text, text
