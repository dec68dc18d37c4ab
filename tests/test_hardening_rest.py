"""Regressions of the hostile-client run (issue 8): each class of input answers a 4xx naming the
field, and nothing an accepted request stores breaks a later read, edit or delete."""

from __future__ import annotations

import gzip
import json
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import AppClientFactory, auth

LIVE = "/creators/creator_001/channel"
WATCH = f"{LIVE}/live/watch"
JSON = {"Content-Type": "application/json"}
ADMIN = {**auth("ops", admin=True), **JSON}
HEARTBEAT = "/analytics/live/session/heartbeat"
START = "/analytics/live/session/start"
END = "/analytics/live/session/end"


async def _error(resp: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """The JSON envelope of an error answer, checked for `status` and the named `field`."""
    assert resp.content_type == "application/json", await resp.text()
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, body
    assert (body["status"], body["code"]) == ("error", status)
    if field is not None:
        assert body.get("field") == field, body
    return body


async def test_integers_past_the_column_range_are_422(client: TestClient[Any, Any]) -> None:
    for query, field in (
        ("season=3000000000", "season"),
        ("page=9223372036854775807", "page"),
        ("page=99999999999999999999999", "page"),
    ):
        await _error(await client.get(f"{LIVE}/ondemand?{query}"), 422, field)
    content = {"content_id": "c_big", "type": "free", "title": "Big", "duration_seconds": 1}
    for field, value in (
        ("duration_seconds", 2**31),
        ("views", 2**63),
        ("season", 2**40),
    ):
        resp = await client.post(
            "/admin/creators/creator_001/content", json={**content, field: value}, headers=ADMIN
        )
        await _error(resp, 422, field)
    resp = await client.post(
        "/admin/creators/creator_001/content", json={**content, "views": 2**62}, headers=ADMIN
    )
    assert resp.status == 201, await resp.text()  # bigint: a view count this large is storable
    resp = await client.patch(
        "/admin/channels/ch_101/live", json={"bitrate_kbps": 2**31}, headers=ADMIN
    )
    await _error(resp, 422, "bitrate_kbps")


async def test_nul_in_path_query_and_body_is_refused(client: TestClient[Any, Any]) -> None:
    for path in ("live", "live/viewers", "live/metadata", "ondemand"):
        await _error(await client.get(f"/creators/x%00/channel/{path}"), 404, "creator_id")
    await _error(await client.get(f"{LIVE}/ondemand?type=all%00"), 422, "type")
    resp = await client.post(
        "/admin/creators", json={"creator_id": "c_nul", "name": "a\u0000b"}, headers=ADMIN
    )
    await _error(resp, 422, "name")
    resp = await client.patch("/admin/programs/prog_002", json={"title": "x\x00"}, headers=ADMIN)
    await _error(resp, 422, "title")


async def test_deep_json_is_400_not_a_crash(client: TestClient[Any, Any]) -> None:
    body = {"channel_id": "ch_101", "device_type": "web"}
    deep = json.dumps(body)[:-1] + ', "extra": ' + "[" * 5000 + "]" * 5000 + "}"
    resp = await client.post(WATCH, data=deep, headers={**auth(), **JSON})
    await _error(resp, 400, "body")
    # Kept values (free-form objects) nest at most 64 levels.
    beat = {
        "session_id": "sess_deep",
        "device_id": "dev_deep",
        "stream_id": "stream_abc123",
        "channel_id": "ch_101",
        "creator_id": "creator_001",
        "playback": {"is_playing": True, "is_buffering": False},
        "engagement": {"a": json.loads("[" * 100 + "]" * 100)},
        "timestamp": "2024-11-01T18:15:00Z",
    }
    await _error(await client.post(HEARTBEAT, json=beat), 400)


async def test_bodies_that_lie_about_their_encoding_are_400(client: TestClient[Any, Any]) -> None:
    body = json.dumps({"channel_id": "ch_101", "device_type": "web"}).encode()
    # A broken payload stream ends the connection after the answer: one connection each.
    headers = {**auth(), **JSON, "Content-Encoding": "gzip", "Connection": "close"}
    await _error(await client.post(WATCH, data=b"not gzip at all", headers=headers), 400, "body")
    headers["Content-Encoding"] = "deflate"
    await _error(await client.post(WATCH, data=b"\x00\x01garbage", headers=headers), 400, "body")
    odd = {**auth(), "Content-Type": "application/json; charset=no-such-charset"}
    resp = await client.post(WATCH, data=body, headers=odd)
    assert resp.status in (200, 400), await resp.text()
    utf16 = {**auth(), "Content-Type": "application/json; charset=utf-16"}
    await _error(await client.post(WATCH, data=body.decode().encode("utf-16"), headers=utf16), 400)
    # A body that really is gzip is decoded and accepted.
    headers["Content-Encoding"] = "gzip"
    resp = await client.post(WATCH, data=gzip.compress(body), headers=headers)
    assert resp.status == 200, await resp.text()


async def test_instants_outside_the_window_are_422(
    client: TestClient[Any, Any], demo_db: asyncpg.Pool
) -> None:
    program = {"program_id": "prog_old", "title": "Old", "ends_at": "2030-01-01T00:00:00Z"}
    for stamp in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        resp = await client.post(
            "/admin/channels/ch_101/programs", json={**program, "starts_at": stamp}, headers=ADMIN
        )
        await _error(resp, 422, "starts_at")
    resp = await client.patch(
        "/admin/programs/prog_002", json={"ends_at": "0001-01-01T00:00:00Z"}, headers=ADMIN
    )
    await _error(resp, 422, "ends_at")
    assert (
        await demo_db.fetchval("select count(*) from programs where starts_at < '2000-01-01'") == 0
    )
    # The channel still works: nothing poisoned was stored.
    assert (
        await client.post(
            WATCH, json={"channel_id": "ch_101", "device_type": "web"}, headers=auth()
        )
    ).status == 200
    beat = {
        "session_id": "sess_year1",
        "device_id": "dev_year1",
        "stream_id": "stream_abc123",
        "channel_id": "ch_101",
        "creator_id": "creator_001",
        "playback": {"is_playing": True, "is_buffering": False},
        "timestamp": "0001-01-01T00:00:00+01:00",
    }
    await _error(await client.post(HEARTBEAT, json=beat), 422, "timestamp")
    resp = await client.get(
        "/analytics/live/streams/stream_abc123/summary", headers=auth("ops", admin=True)
    )
    assert resp.status in (200, 404), await resp.text()


async def test_zone_directories_are_not_zones(client: TestClient[Any, Any]) -> None:
    for tz in ("America", "posixrules/..", "../etc/passwd", "zone.tab", "Etc"):
        resp = await client.post(
            WATCH,
            json={"channel_id": "ch_101", "device_type": "web", "timezone": tz},
            headers=auth(),
        )
        await _error(resp, 422, "timezone")


async def test_analytics_sessions_belong_to_who_started_them(
    client: TestClient[Any, Any], db: asyncpg.Pool
) -> None:
    end = {
        "session_id": "sess_owned",
        "watch_summary": {
            "total_watch_seconds": 999,
            "end_reason": "error",
            "programs_watched": [],
        },
        "performance": {"total_rebuffer_count": 0, "quality_switches": 0},
        "engagement": {"total_chat_messages_sent": 0, "total_reactions_sent": 0},
        "timestamp": "2024-11-01T19:00:00Z",
    }
    beat = {
        "session_id": "sess_owned",
        "user_id": "user_a",
        "device_id": "dev_a",
        "stream_id": "stream_abc123",
        "channel_id": "ch_101",
        "creator_id": "creator_001",
        "playback": {"is_playing": True, "is_buffering": False},
        "timestamp": "2024-11-01T18:15:00Z",
    }
    assert (await client.post(HEARTBEAT, json=beat, headers=auth("user_a"))).status == 200
    # A guest and another user cannot end it with forged numbers.
    await _error(await client.post(END, json={**end, "device_id": "dev_a"}), 403, "session_id")
    resp = await client.post(END, json={**end, "user_id": "user_b"}, headers=auth("user_b"))
    await _error(resp, 403, "session_id")
    assert (
        await db.fetchval("select ended_at from analytics_sessions where session_id = 'sess_owned'")
        is None
    )
    resp = await client.post(
        END,
        json={
            **end,
            "user_id": "user_a",
            "watch_summary": {**end["watch_summary"], "total_watch_seconds": 60},
        },
        headers=auth("user_a"),
    )
    assert resp.status == 200, await resp.text()
    assert (
        await db.fetchval(
            "select total_watch_seconds from analytics_sessions where session_id = 'sess_owned'"
        )
        == 60
    )
    # A guest's session is its device's.
    guest = {**beat, "session_id": "sess_guest", "user_id": None, "device_id": "dev_g"}
    assert (await client.post(HEARTBEAT, json=guest)).status == 200
    resp = await client.post(
        HEARTBEAT, json={**guest, "device_id": "dev_other", "timestamp": "2024-11-01T18:16:00Z"}
    )
    await _error(resp, 403, "session_id")


async def test_ingest_bodies_are_capped_by_bytes(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client(analytics_max_pending_bytes=2048)
    beat = {
        "session_id": "sess_cap",
        "device_id": "dev_cap",
        "stream_id": "stream_abc123",
        "channel_id": "ch_101",
        "creator_id": "creator_001",
        "playback": {"is_playing": True, "is_buffering": False},
        "timestamp": "2024-11-01T18:15:00Z",
    }
    assert (await client.post(HEARTBEAT, json=beat)).status == 200
    big = {**beat, "engagement": {"pad": "x" * 4096}}
    resp = await client.post(HEARTBEAT, json=big)
    await _error(resp, 503)
    assert int(resp.headers["Retry-After"]) >= 1


async def test_admin_writes_check_authorization_before_the_body(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.post("/admin/creators", data=b"{not json", headers=JSON)
    await _error(resp, 401)
    resp = await client.patch(
        "/admin/channels/ch_101", data=b"{not json", headers={**auth("user_x"), **JSON}
    )
    await _error(resp, 403)


async def test_every_answer_carries_a_request_id(client: TestClient[Any, Any]) -> None:
    resp = await client.get(f"{LIVE}/live", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await client.get("/no/such/route")
    await _error(resp, 404)
    assert len(resp.headers["X-Request-Id"]) >= 16
