"""Faults caused for real: kill -9 of a server mid-stream, and PostgreSQL stopped and started.

A 200 must mean committed: after a crash every acknowledged event_id is in
PostgreSQL; while PostgreSQL is down ingest answers 503 + Retry-After and
stores nothing it did not acknowledge, and it recovers without a restart.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from store.embedded import EmbeddedPostgres, free_port
from store.pg import migrate
from tests.conftest import AppClientFactory, ServerFactory

EVENTS = "/analytics/live/events"
HEARTBEAT = "/analytics/live/session/heartbeat"
BATCH = 25


def batch(session_id: str, event_ids: list[str]) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "user_id": None,
        "device_id": "dev_" + session_id,
        "stream_id": "stream_crash",
        "creator_id": "creator_crash",
        "events": [
            {
                "event_id": e,
                "event_type": "reaction",
                "timestamp": "2024-11-01T18:15:00Z",
                "metadata": {"n": i},
            }
            for i, e in enumerate(event_ids)
        ],
    }


async def test_every_acknowledged_event_survives_kill_9(
    start_server: ServerFactory, db: asyncpg.Pool
) -> None:
    server = await start_server()
    acked: set[str] = set()
    sent: set[str] = set()
    enough = asyncio.Event()

    async def pump(worker: int) -> None:
        async with aiohttp.ClientSession() as http:
            for n in range(2000):  # bounded; the kill ends it far sooner
                ids = [f"w{worker}-b{n}-e{i}" for i in range(BATCH)]
                sent.update(ids)
                try:
                    async with http.post(
                        server.url + EVENTS, json=batch(f"crash_{worker}", ids)
                    ) as r:
                        if r.status != 200:
                            continue
                        body = await r.json()
                except aiohttp.ClientError:
                    return  # the server is gone
                assert body["data"]["accepted_count"] == BATCH
                acked.update(ids)
                if len(acked) >= 3000:
                    enough.set()

    workers = [asyncio.create_task(pump(w)) for w in range(6)]
    await asyncio.wait_for(enough.wait(), 60)
    server.kill()  # while the other workers' requests are in flight
    await asyncio.wait_for(asyncio.gather(*workers), 30)
    assert len(sent) > len(acked)  # some requests were cut off unanswered

    restarted = await start_server()
    stored = {
        r["event_id"]
        for r in await db.fetch(
            "select event_id from analytics_events where event_id = any($1::text[])", list(acked)
        )
    }
    assert stored == acked
    # The restarted server takes the players' retries without duplicating anything.
    total = await db.fetchval("select count(*) from analytics_events")
    retry = sorted(acked)[:BATCH]
    async with (
        aiohttp.ClientSession() as http,
        http.post(restarted.url + EVENTS, json=batch("crash_0", retry)) as r,
    ):
        assert r.status == 200 and (await r.json())["data"]["accepted_count"] == BATCH
    assert await db.fetchval("select count(*) from analytics_events") == total


def heartbeat(n: int) -> dict[str, Any]:
    return {
        "session_id": "sess_outage",
        "device_id": "dev_sess_outage",  # the device batch() reports for this session
        "stream_id": "stream_outage",
        "channel_id": "ch_outage",
        "creator_id": "creator_outage",
        "playback": {"is_playing": True, "is_buffering": False},
        "timestamp": f"2024-11-01T18:{n // 60:02d}:{n % 60:02d}Z",
    }


async def test_postgres_stopped_gives_503_then_recovers(
    make_client: AppClientFactory, tmp_path: Path
) -> None:
    own = EmbeddedPostgres(tmp_path / "pgdata", port=free_port(), fsync=False)
    await asyncio.to_thread(own.start)
    try:
        await migrate(own.url)
        client: TestClient[Any, Any] = await make_client(database_url=own.url)
        assert (await client.post(HEARTBEAT, json=heartbeat(1))).status == 200

        await asyncio.to_thread(own.stop)
        for n in (2, 3):
            resp = await client.post(HEARTBEAT, json=heartbeat(n))
            body = await resp.json()
            assert resp.status == 503, body
            assert int(resp.headers["Retry-After"]) >= 1
            assert (body["status"], body["code"]) == ("error", 503)
        resp = await client.post(EVENTS, json=batch("sess_outage", ["outage-1"]))
        assert resp.status == 503 and "Retry-After" in resp.headers

        await asyncio.to_thread(own.start)  # same data directory, same port
        deadline = time.monotonic() + 30
        statuses = []
        while time.monotonic() < deadline:
            resp = await client.post(HEARTBEAT, json=heartbeat(4))
            statuses.append(resp.status)
            if resp.status == 200:
                break
            await asyncio.sleep(0.2)
        assert statuses[-1] == 200, statuses
        assert (await client.post(EVENTS, json=batch("sess_outage", ["outage-2"]))).status == 200
        await client.close()

        conn = await asyncpg.connect(own.url)
        try:
            stamps = [
                r["client_ts_text"]
                for r in await conn.fetch(
                    "select client_ts_text from analytics_heartbeats order by client_ts"
                )
            ]
            events = [
                r["event_id"] for r in await conn.fetch("select event_id from analytics_events")
            ]
        finally:
            await conn.close()
        # What got a 200 is there; what got a 503 is not.
        assert stamps == ["2024-11-01T18:00:01Z", "2024-11-01T18:00:04Z"]
        assert events == ["outage-2"]
    finally:
        await asyncio.to_thread(own.stop)
