"""Endpoints 51-54 on the real app and PostgreSQL: shapes, validation, idempotency, auth,
lifecycle (implicit sessions, end twice, heartbeat after end, sweeper) and group commit."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from server.routes.analytics import WRITER
from tests.conftest import AppClientFactory, auth

FIXTURES = Path(__file__).parent / "fixtures"
START = "/analytics/live/session/start"
HEARTBEAT = "/analytics/live/session/heartbeat"
END = "/analytics/live/session/end"
EVENTS = "/analytics/live/events"
Client = TestClient[Any, Any]


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"analytics_{name}.json").read_text())
    return data


def without(body: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    del node[leaf]
    return out


async def post(
    client: Client, path: str, body: Any, user: str | None = "user_123", **kw: Any
) -> tuple[int, dict[str, Any]]:
    headers = auth(user) if user else {}
    resp = await client.post(path, json=body, headers=headers, **kw)
    return resp.status, await resp.json()


async def count(db: asyncpg.Pool, table: str, where: str = "true", *args: Any) -> int:
    return int(await db.fetchval(f"select count(*) from {table} where {where}", *args))


def assert_seed_shape(got: dict[str, Any], seed_name: str) -> None:
    seed = load(seed_name)
    assert got.keys() == seed.keys() and got["status"] == "success"
    assert got["data"].keys() == seed["data"].keys()
    for key, value in seed["data"].items():
        if key != "server_timestamp":
            assert got["data"][key] == value, key
    assert got["data"]["server_timestamp"].endswith("Z")


async def test_seed_bodies_get_seed_responses(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    client = await make_client()
    for path, name in (
        (START, "session_start"),
        (HEARTBEAT, "session_heartbeat"),
        (EVENTS, "events"),
        (END, "session_end"),
    ):
        status, body = await post(client, path, load(name))
        assert status == 200, body
        assert_seed_shape(body, f"{name}_response")
    row = await db.fetchrow(
        "select * from analytics_sessions where session_id = 'sess_live_xyz001'"
    )
    assert row["platform"] == "web" and row["implicit"] is False
    assert row["started_at_text"] == "2024-11-01T18:15:00Z"
    assert row["start_payload"]["geo"]["city"] == "Atlanta"
    assert (row["end_reason"], row["total_watch_seconds"], row["closed_by"]) == (
        "user_exit",
        2340,
        "player",
    )
    assert row["programs_watched"][1]["program_id"] == "prog_003"
    beat = await db.fetchrow("select * from analytics_heartbeats")
    assert (beat["bitrate_kbps"], beat["latency_ms"], beat["is_buffering"], beat["quality"]) == (
        5800,
        2100.0,
        False,
        "1080p",
    )
    assert beat["client_ts_text"] == "2024-11-01T18:15:30Z" and beat["received_at"] is not None
    assert beat["body"]["engagement"]["reactions_sent"] == 1
    event = await db.fetchrow("select * from analytics_events where event_id = 'evt_005'")
    assert event["metadata"] == {"amount": 5.0, "currency": "USD"}
    assert event["event_type"] == "tip" and event["client_ts_text"] == "2024-11-01T18:59:30Z"


REQUIRED = {
    START: (
        "session_start",
        [
            "session_id",
            "device_id",
            "platform",
            "stream",
            "stream.stream_id",
            "stream.channel_id",
            "stream.creator_id",
            "epg",
            "epg.current_program_id",
            "playback",
            "playback.quality",
            "playback.latency_mode",
            "playback.dvr_enabled",
            "device",
            "device.connection_type",
            "geo",
            "geo.country",
            "timestamp",
        ],
    ),
    HEARTBEAT: (
        "session_heartbeat",
        [
            "session_id",
            "device_id",
            "stream_id",
            "channel_id",
            "creator_id",
            "playback",
            "playback.is_playing",
            "playback.is_buffering",
            "timestamp",
        ],
    ),
    END: (
        "session_end",
        [
            "session_id",
            "watch_summary",
            "watch_summary.total_watch_seconds",
            "watch_summary.end_reason",
            "watch_summary.programs_watched",
            "performance",
            "performance.total_rebuffer_count",
            "performance.quality_switches",
            "engagement",
            "engagement.total_chat_messages_sent",
            "engagement.total_reactions_sent",
            "timestamp",
        ],
    ),
    EVENTS: ("events", ["session_id", "device_id", "stream_id", "creator_id", "events"]),
}


@pytest.mark.parametrize("path", list(REQUIRED))
async def test_every_required_field_missing_in_turn(
    make_client: AppClientFactory, db: asyncpg.Pool, path: str
) -> None:
    client = await make_client()
    name, fields = REQUIRED[path]
    for field in fields:
        status, body = await post(client, path, without(load(name), field))
        assert status == 422, (field, body)
        assert body["status"] == "error" and body["code"] == 422
        assert body["field"] == field and field.rsplit(".", 1)[-1] in body["message"]
    assert await count(db, "analytics_sessions") == 0


async def test_optional_fields_may_be_absent(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    client = await make_client()
    start = load("session_start")
    for field in (
        "app_version",
        "referrer",
        "stream.creator_name",
        "epg.current_program_title",
        "device.os",
        "geo.city",
    ):
        start = without(start, field)
    assert (await post(client, START, {**start, "user_id": None}, user=None))[0] == 200
    beat = load("session_heartbeat")
    for field in ("epg", "performance", "engagement", "playback.quality"):
        beat = without(beat, field)
    # The same guest who started the session (a user's heartbeat would be refused: 403).
    assert (await post(client, HEARTBEAT, {**beat, "user_id": None}, user=None))[0] == 200
    row = await db.fetchrow("select * from analytics_heartbeats")
    assert (row["bitrate_kbps"], row["quality"], row["program_id"]) == (None, None, None)


async def test_bad_timestamps_and_values_are_422(make_client: AppClientFactory) -> None:
    client = await make_client()
    for path, name in (
        (START, "session_start"),
        (HEARTBEAT, "session_heartbeat"),
        (END, "session_end"),
    ):
        status, body = await post(client, path, {**load(name), "timestamp": "2024-11-01 6pm"})
        assert (status, body["field"]) == (422, "timestamp")
    end = load("session_end")
    end["watch_summary"]["total_watch_seconds"] = -1
    status, body = await post(client, END, end)
    assert (status, body["field"]) == (422, "watch_summary.total_watch_seconds")


async def test_whole_request_problems(make_client: AppClientFactory, db: asyncpg.Pool) -> None:
    client = await make_client()
    resp = await client.post(
        EVENTS,
        data=b'{"session_id": "s", "events": [',
        headers={"Content-Type": "application/json"},
    )
    body = await resp.json()
    assert resp.status == 400 and body["status"] == "error" and body["field"] == "body"

    batch = load("events")
    event = {"event_type": "mute", "timestamp": "2024-11-01T18:15:00Z"}
    batch["events"] = [{**event, "event_id": f"e{i}"} for i in range(501)]
    status, body = await post(client, EVENTS, batch)
    assert (status, body["field"]) == (422, "events") and "500" in body["message"]
    batch["events"] = batch["events"][:500]
    status, body = await post(client, EVENTS, batch)
    assert (status, body["data"]["accepted_count"]) == (200, 500)

    huge = load("events")
    huge["padding"] = "x" * (1024 * 1024 + 1)
    resp = await client.post(
        EVENTS,
        data=io.BytesIO(json.dumps(huge).encode()),
        headers={"Content-Type": "application/json", **auth()},
    )
    body = await resp.json()
    assert (resp.status, body["code"], body["field"]) == (413, 413, "body")
    assert await count(db, "analytics_events") == 500


async def test_mixed_batch_and_idempotent_resend(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    client = await make_client()
    ts = "2024-11-01T18:20:00Z"
    batch = load("events")
    batch["events"] = [
        {"event_id": "m1", "event_type": "stream_start", "timestamp": ts},
        {"event_id": "m2", "event_type": "warp", "timestamp": ts},
        {"event_type": "mute", "timestamp": ts},
        {"event_id": "m4", "event_type": "mute"},
        {"event_id": "m5", "event_type": "mute", "timestamp": "noon"},
        {"event_id": "m6", "event_type": "mute", "timestamp": ts, "metadata": "loud"},
        {"event_id": "m1", "event_type": "unmute", "timestamp": ts},
        {
            "event_id": "m8",
            "event_type": "stream_buffer_start",
            "timestamp": ts,
            "metadata": {"buffer_ms": 0},
        },
    ]
    expected_rejected = [
        {"event_id": "m2", "reason": "unknown event_type"},
        {"event_id": None, "reason": "missing event_id"},
        {"event_id": "m4", "reason": "missing timestamp"},
        {"event_id": "m5", "reason": "invalid timestamp"},
        {"event_id": "m6", "reason": "metadata must be an object"},
        {"event_id": "m1", "reason": "duplicate event_id in batch"},
    ]
    for _ in range(2):  # the second time is a client retry of the same batch
        status, body = await post(client, EVENTS, batch)
        assert status == 200
        data = body["data"]
        assert (data["accepted_count"], data["rejected_count"]) == (2, 6)
        assert data["rejected_events"] == expected_rejected
        rows = await db.fetch("select event_id, event_type from analytics_events order by event_id")
        assert [(r["event_id"], r["event_type"]) for r in rows] == [
            ("m1", "stream_start"),
            ("m8", "stream_buffer_start"),
        ]
    batch["events"] = [
        batch["events"][0],
        {"event_id": "m9", "event_type": "share", "timestamp": ts},
    ]
    status, body = await post(client, EVENTS, batch)
    assert body["data"]["accepted_count"] == 2 and await count(db, "analytics_events") == 3
    assert await count(db, "analytics_sessions") == 1


async def test_resent_start_heartbeat_and_end_create_no_duplicates(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    client = await make_client()
    start, beat = load("session_start"), load("session_heartbeat")
    for _ in range(3):
        assert (await post(client, START, start))[0] == 200
        assert (await post(client, HEARTBEAT, beat))[0] == 200
    # A different start for the same session id changes nothing: the first start wins.
    assert (await post(client, START, {**start, "platform": "roku"}))[0] == 200
    # The same instant written another way is the same heartbeat.
    assert (await post(client, HEARTBEAT, {**beat, "timestamp": "2024-11-01T14:15:30-04:00"}))[
        0
    ] == 200
    assert await count(db, "analytics_sessions") == 1
    assert await count(db, "analytics_heartbeats") == 1
    assert await db.fetchval("select platform from analytics_sessions") == "web"
    await post(client, HEARTBEAT, {**beat, "timestamp": "2024-11-01T18:16:00Z"})
    assert await count(db, "analytics_heartbeats") == 2


async def test_ingest_auth_rules(make_client: AppClientFactory, db: asyncpg.Pool) -> None:
    client = await make_client()
    beat = load("session_heartbeat")
    # A user's data needs that user's token.
    status, body = await post(client, HEARTBEAT, beat, user=None)
    assert (status, body["field"]) == (401, "Authorization")
    status, body = await post(client, HEARTBEAT, beat, user="user_999")
    assert (status, body["field"]) == (403, "user_id")
    resp = await client.post(HEARTBEAT, json=beat, headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    assert await count(db, "analytics_heartbeats") == 0
    # Guests report without a token; a signed-in player may leave user_id null.
    guest = {**beat, "user_id": None, "session_id": "sess_guest"}
    assert (await post(client, HEARTBEAT, guest, user=None))[0] == 200
    anon = {**beat, "user_id": None, "session_id": "sess_token_only"}
    assert (await post(client, HEARTBEAT, anon, user="user_777"))[0] == 200
    # An admin may report for anyone (backfills).
    resp = await client.post(
        HEARTBEAT, json={**beat, "session_id": "sess_admin"}, headers=auth("ops", admin=True)
    )
    assert resp.status == 200
    users = dict(await db.fetch("select session_id, user_id from analytics_heartbeats"))
    assert users == {"sess_guest": None, "sess_token_only": "user_777", "sess_admin": "user_123"}


async def test_heartbeat_and_events_for_unknown_session_create_it(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    client = await make_client()
    beat = {**load("session_heartbeat"), "session_id": "sess_after_restart"}
    assert (await post(client, HEARTBEAT, beat))[0] == 200
    batch = {**load("events"), "session_id": "sess_after_restart"}
    assert (await post(client, EVENTS, batch))[0] == 200
    row = await db.fetchrow(
        "select * from analytics_sessions where session_id = 'sess_after_restart'"
    )
    assert row["implicit"] is True and row["start_payload"] is None
    # The earliest client time seen: the events batch holds 18:15:01, before the heartbeat.
    assert row["started_at"].isoformat() == "2024-11-01T18:15:01+00:00"
    assert (row["stream_id"], row["creator_id"], row["user_id"]) == (
        "stream_abc123",
        "creator_001",
        "user_123",
    )
    # The start arriving late fills the session in.
    start = {**load("session_start"), "session_id": "sess_after_restart"}
    assert (await post(client, START, start))[0] == 200
    row = await db.fetchrow(
        "select * from analytics_sessions where session_id = 'sess_after_restart'"
    )
    assert row["implicit"] is False and row["platform"] == "web"
    assert row["started_at"].isoformat() == "2024-11-01T18:15:00+00:00"


async def test_end_for_unknown_session_and_end_twice(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    client = await make_client()
    end = {**load("session_end"), "session_id": "sess_unseen"}
    status, body = await post(client, END, end)
    assert status == 200 and body["data"]["watch_summary"]["total_watch_formatted"] == "39:00"
    row = await db.fetchrow("select * from analytics_sessions where session_id = 'sess_unseen'")
    assert row["implicit"] is True
    assert row["started_at"].isoformat() == "2024-11-01T18:15:00+00:00"  # 18:54 - 39:00
    # A second, different end is answered with the first one's summary and changes nothing.
    other = copy.deepcopy(end)
    other["watch_summary"].update(total_watch_seconds=60, end_reason="error")
    status, body = await post(client, END, other)
    assert body["data"]["watch_summary"] == {
        "total_watch_seconds": 2340,
        "total_watch_formatted": "39:00",
        "end_reason": "user_exit",
    }
    row = await db.fetchrow("select * from analytics_sessions where session_id = 'sess_unseen'")
    assert (row["total_watch_seconds"], row["end_reason"]) == (2340, "user_exit")
    # Concurrent duplicate ends (same batch or not) all get the same stored summary.
    ends = [copy.deepcopy(end) for _ in range(5)]
    for i, e in enumerate(ends):
        e["session_id"] = "sess_race"
        e["watch_summary"]["total_watch_seconds"] = 100 + i
    answers = await asyncio.gather(*(post(client, END, e) for e in ends))
    totals = {a[1]["data"]["watch_summary"]["total_watch_seconds"] for a in answers}
    assert len(totals) == 1
    stored = await db.fetchval(
        "select total_watch_seconds from analytics_sessions where session_id = 'sess_race'"
    )
    assert totals == {stored}


async def test_heartbeat_after_player_end_changes_nothing(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    client = await make_client()
    assert (await post(client, START, load("session_start")))[0] == 200
    assert (await post(client, END, load("session_end")))[0] == 200
    late = {**load("session_heartbeat"), "timestamp": "2024-11-01T18:55:00Z"}
    status, body = await post(client, HEARTBEAT, late)
    assert status == 200 and body["data"]["accepted"] is True
    row = await db.fetchrow("select * from analytics_sessions")
    assert (row["end_reason"], row["total_watch_seconds"], row["closed_by"]) == (
        "user_exit",
        2340,
        "player",
    )
    assert row["last_heartbeat_at"] is None
    assert await count(db, "analytics_heartbeats") == 1  # kept as data


async def wait_for(db: asyncpg.Pool, sql: str, *args: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await db.fetchrow(sql, *args)
        if row is not None:
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {sql}")


async def test_sweeper_times_out_silent_sessions_and_a_heartbeat_reopens(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    client = await make_client(analytics_session_timeout=1.0)
    start = {**load("session_start"), "session_id": "sess_quiet"}
    beat = {**load("session_heartbeat"), "session_id": "sess_quiet"}
    assert (await post(client, START, start))[0] == 200
    for stamp in ("2024-11-01T18:15:30Z", "2024-11-01T18:16:00Z"):
        assert (await post(client, HEARTBEAT, {**beat, "timestamp": stamp}))[0] == 200
    # A session without heartbeats ends at its start: no watch time.
    assert (await post(client, START, {**start, "session_id": "sess_no_beats"}))[0] == 200
    row = await wait_for(
        db,
        "select * from analytics_sessions where session_id = 'sess_quiet' and ended_at is not null",
    )
    assert (row["end_reason"], row["closed_by"], row["total_watch_seconds"]) == (
        "timeout",
        "sweeper",
        60,
    )
    assert (
        row["ended_at"].isoformat() == "2024-11-01T18:16:00+00:00"
    )  # capped at the last heartbeat
    row = await wait_for(
        db,
        "select * from analytics_sessions where session_id = 'sess_no_beats' "
        "and ended_at is not null",
    )
    assert (row["end_reason"], row["total_watch_seconds"]) == ("timeout", 0)
    # A retried old heartbeat does not reopen; a newer one does (the silence was a gap).
    assert (await post(client, HEARTBEAT, {**beat, "timestamp": "2024-11-01T18:15:30Z"}))[0] == 200
    assert (
        await db.fetchval(
            "select closed_by from analytics_sessions where session_id = 'sess_quiet'"
        )
        == "sweeper"
    )
    assert (await post(client, HEARTBEAT, {**beat, "timestamp": "2024-11-01T18:20:00Z"}))[0] == 200
    row = await db.fetchrow("select * from analytics_sessions where session_id = 'sess_quiet'")
    assert row["ended_at"] is None and row["end_reason"] is None
    # The player's own end replaces a sweeper close.
    row = await wait_for(
        db,
        "select * from analytics_sessions where session_id = 'sess_quiet' and ended_at is not null",
    )
    assert row["total_watch_seconds"] == 300
    end = {**load("session_end"), "session_id": "sess_quiet"}
    status, body = await post(client, END, end)
    assert (status, body["data"]["watch_summary"]["end_reason"]) == (200, "user_exit")
    assert (
        await db.fetchval(
            "select closed_by from analytics_sessions where session_id = 'sess_quiet'"
        )
        == "player"
    )


async def test_group_commit_uses_fewer_commits_than_requests(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    client = await make_client()
    writer = client.server.app[WRITER]
    before = writer.commits
    beat = load("session_heartbeat")
    n = 120
    answers = await asyncio.gather(
        *(
            post(
                client,
                HEARTBEAT,
                {
                    **beat,
                    "session_id": f"sess_{i % 7}",
                    "timestamp": f"2024-11-01T18:{i // 60:02d}:{i % 60:02d}Z",
                },
            )
            for i in range(n)
        )
    )
    assert all(status == 200 for status, _ in answers)
    assert await count(db, "analytics_heartbeats") == n
    commits = writer.commits - before
    assert 0 < commits < n


async def test_one_unstorable_request_does_not_fail_its_batch(
    make_client: AppClientFactory, db: asyncpg.Pool
) -> None:
    """PostgreSQL refuses NUL characters: the edge refuses the request carrying one with a 422
    naming the field before it reaches the batch, and its neighbours get 200."""
    client = await make_client()
    beat = load("session_heartbeat")
    good = [{**beat, "session_id": f"sess_ok_{i}"} for i in range(10)]
    poison = {**beat, "session_id": "sess_poison", "engagement": {"note": "nul\u0000here"}}
    answers = await asyncio.gather(
        *(post(client, HEARTBEAT, b) for b in [*good[:5], poison, *good[5:]])
    )
    statuses = [status for status, _ in answers]
    assert statuses == [200] * 5 + [422] + [200] * 5
    assert answers[5][1]["field"] == "engagement.note"
    assert await count(db, "analytics_heartbeats") == 10
    assert await count(db, "analytics_sessions", "session_id = 'sess_poison'") == 0
