"""The real-time node's long-lived loops keep running with the default settings.

A loop that dies at start (e.g. of a bad back-off configuration) is only
logged when the node stops, and presence would silently stop refreshing:
check every loop is still alive once the app has started.
"""

from __future__ import annotations

import asyncio

import asyncpg

from server.state import REALTIME
from tests.conftest import AppClientFactory


async def test_every_loop_survives_its_start(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client()  # default session_ttl (75 s), viewer_interval, ping_interval
    rt = client.app[REALTIME]
    await asyncio.sleep(0.3)
    loops = rt._loops
    assert loops and all(not task.done() for task in loops), [
        (t.get_name(), t.exception() if t.done() and not t.cancelled() else None) for t in loops
    ]
