"""Endpoints 33–36 on the demo world: sessions, limits under races, counts, expiry, ownership."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from server.auth import verify_stream_token
from tests.conftest import TEST_SECRET, AppClientFactory, auth

LIVE = "/creators/creator_001/channel/live"
WATCH = f"{LIVE}/watch"
BODY = {
    "channel_id": "ch_101",
    "device_type": "web",
    "quality": "auto",
    "timezone": "America/New_York",
}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _json(resp: Any, status: int = 200) -> Any:
    body = await resp.json()
    assert resp.status == status, body
    return body


async def _watch(
    client: TestClient[Any, Any], user: str = "user_123", **body: Any
) -> dict[str, Any]:
    return dict(
        (await _json(await client.post(WATCH, json={**BODY, **body}, headers=auth(user))))["data"]
    )


async def _viewers(client: TestClient[Any, Any]) -> dict[str, Any]:
    return dict((await _json(await client.get(f"{LIVE}/viewers")))["data"]["viewers"])


async def _beat(
    client: TestClient[Any, Any], sid: str, user: str = "user_123", status: int = 200
) -> dict[str, Any]:
    body = await _json(
        await client.get(f"{LIVE}/heartbeat", params={"session_id": sid}, headers=auth(user)),
        status,
    )
    return dict(body["data"] if status == 200 else body)


async def test_33_starts_a_session(client: TestClient[Any, Any]) -> None:
    data = await _watch(client)
    s = data["session"]
    assert s["session_id"].startswith("sess_watch_") and s["device_type"] == "web"
    assert s["heartbeat_interval_seconds"] == 30
    assert ts(s["expires_at"]) - ts(s["started_at"]) == timedelta(hours=6)
    st = data["stream"]
    assert (st["stream_id"], st["quality"], st["latency_mode"]) == ("stream_abc123", "auto", "low")
    claims = verify_stream_token(TEST_SECRET, st["token"])
    assert (claims["sid"], claims["sub"], claims["quality"]) == (
        s["session_id"],
        "user_123",
        "auto",
    )
    assert data["channel"] == {
        "channel_id": "ch_101",
        "channel_name": "Chris Spencer 24/7",
        "channel_number": 101,
        "is_live": True,
    }
    assert data["creator"] == {"id": "creator_001", "name": "Chris Spencer", "is_verified": True}
    assert (data["viewers"]["watching_now"], data["viewers"]["peak_today"]) == (1, 1)
    epg = data["epg"]
    assert epg["timezone"] == "America/New_York"
    assert epg["current_program"]["program_id"] == "prog_002"
    assert epg["current_program"]["elapsed_minutes"] == 16
    assert epg["next_program"]["program_id"] == "prog_003"
    sched = epg["schedule"]
    assert sum(e["is_current"] for e in sched) == 1
    # The schedule covers the whole local day: it starts at or before local midnight.
    first, last = ts(sched[0]["starts_at"]), ts(sched[-1]["ends_at"])
    assert last - first >= timedelta(hours=23)
    assert all(ts(a["ends_at"]) <= ts(b["starts_at"]) for a, b in itertools.pairwise(sched))


async def test_33_default_timezone_is_utc(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        WATCH, json={"channel_id": "ch_101", "device_type": "roku"}, headers=auth()
    )
    data = (await _json(resp))["data"]
    assert data["epg"]["timezone"] == "UTC"
    assert data["stream"]["quality"] == "auto"
    assert data["epg"]["date"] == data["session"]["started_at"][:10]


async def test_33_bad_input_names_the_field(client: TestClient[Any, Any]) -> None:
    cases = [
        ({**BODY, "timezone": "Mars/Olympus"}, "timezone"),
        ({**BODY, "timezone": ""}, "timezone"),
        ({**BODY, "device_type": "toaster"}, "device_type"),
        ({**BODY, "quality": "4k"}, "quality"),
        ({**BODY, "channel_id": 101}, "channel_id"),
        ({"device_type": "web"}, "channel_id"),
        ({**BODY, "channel_id": "ch_102"}, "channel_id"),  # exists, but not creator_001's
        ({**BODY, "channel_id": "ch_999"}, "channel_id"),
    ]
    for body, field in cases:
        resp = await _json(await client.post(WATCH, json=body, headers=auth()), 422)
        assert resp["field"] == field, (body, resp)
    malformed = await client.post(
        WATCH, data=b"{not json", headers={**auth(), "Content-Type": "application/json"}
    )
    assert malformed.status == 400
    assert (await malformed.json())["status"] == "error"
    listed = await client.post(WATCH, json=[BODY], headers=auth())
    assert listed.status == 422


async def test_33_auth_and_entitlement(client: TestClient[Any, Any]) -> None:
    assert (await _json(await client.post(WATCH, json=BODY), 401))["field"] == "Authorization"
    garbage = {"Authorization": "Bearer x.y.z"}
    await _json(await client.post(WATCH, json=BODY, headers=garbage), 401)
    await _json(await client.post(WATCH, json=BODY, headers={"Authorization": "Basic abc"}), 401)
    ch102 = {"channel_id": "ch_102", "device_type": "web"}
    denied = await _json(
        await client.post("/creators/creator_002/channel/live/watch", json=ch102, headers=auth()),
        403,
    )
    assert denied["message"] == "Subscription required to watch this channel"
    for user in ("user_vip", "creator_002"):  # a subscriber, and the creator themself
        await _json(
            await client.post(
                "/creators/creator_002/channel/live/watch", json=ch102, headers=auth(user)
            )
        )
    await _json(
        await client.post("/creators/nobody/channel/live/watch", json=BODY, headers=auth()), 404
    )


async def test_33_limit_holds_under_parallel_requests(client: TestClient[Any, Any]) -> None:
    resps = await asyncio.gather(
        *(client.post(WATCH, json=BODY, headers=auth("racer")) for _ in range(10))
    )
    statuses = sorted(r.status for r in resps)
    assert statuses == [200] * 3 + [429] * 7
    for r in resps:
        if r.status == 429:
            assert (await r.json())["message"] == (
                "Maximum concurrent streams reached. Please close another session."
            )
    assert (await _viewers(client))["watching_now"] == 3


async def test_33_limit_holds_across_instances(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    a, b = await make_client(), await make_client()
    resps = await asyncio.gather(
        *(c.post(WATCH, json=BODY, headers=auth("racer")) for c in [a, b] * 5)
    )
    assert sorted(r.status for r in resps) == [200] * 3 + [429] * 7


async def test_33_limit_is_configurable_and_freed_by_delete(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client(max_concurrent_sessions=1)
    first = await _watch(client)
    await _json(await client.post(WATCH, json=BODY, headers=auth()), 429)
    await _json(await client.post(WATCH, json=BODY, headers=auth("another_user")))
    await client.delete(
        WATCH, params={"session_id": first["session"]["session_id"]}, headers=auth()
    )
    await _watch(client)


async def test_34_changes_quality_and_device(client: TestClient[Any, Any]) -> None:
    sid = (await _watch(client))["session"]["session_id"]
    data = (
        await _json(
            await client.patch(WATCH, json={"session_id": sid, "quality": "720p"}, headers=auth())
        )
    )["data"]
    assert data["stream_url"] == "https://cdn.droptv.com/streams/stream_abc123/720p/stream.m3u8"
    assert verify_stream_token(TEST_SECRET, data["token"])["quality"] == "720p"
    qualities = (
        await _json(
            await client.get(f"{LIVE}/qualities", params={"session_id": sid}, headers=auth())
        )
    )["data"]
    assert qualities["current_quality"] == "720p"
    await _json(
        await client.patch(
            WATCH,
            json={"session_id": sid, "quality": "auto", "device_type": "appletv"},
            headers=auth(),
        )
    )
    by_device = (await _viewers(client))["by_device"]
    assert (by_device["web"], by_device["appletv"]) == (0, 1)


async def test_34_errors(client: TestClient[Any, Any]) -> None:
    sid = (await _watch(client))["session"]["session_id"]
    body = {"session_id": sid, "quality": "720p"}
    await _json(await client.patch(WATCH, json=body), 401)
    assert (await _json(await client.patch(WATCH, json=body, headers=auth("intruder")), 403))[
        "field"
    ] == "session_id"
    await _json(
        await client.patch(WATCH, json={**body, "session_id": "sess_watch_x"}, headers=auth()), 404
    )
    bad = await _json(
        await client.patch(WATCH, json={**body, "quality": "8k"}, headers=auth()), 422
    )
    assert bad["field"] == "quality"
    bad = await _json(await client.patch(WATCH, json={"quality": "720p"}, headers=auth()), 422)
    assert bad["field"] == "session_id"
    await client.delete(WATCH, params={"session_id": sid}, headers=auth())
    await _json(await client.patch(WATCH, json=body, headers=auth()), 409)


async def test_35_ends_once_and_reports_duration(client: TestClient[Any, Any]) -> None:
    sid = (await _watch(client))["session"]["session_id"]
    await _watch(client, "user_b")
    assert (await _viewers(client))["watching_now"] == 2
    await asyncio.sleep(1.1)
    body = await _json(await client.delete(WATCH, params={"session_id": sid}, headers=auth()))
    assert body["message"] == "Watch session ended"
    data = body["data"]
    assert data["session_id"] == sid and data["watch_duration_seconds"] >= 1
    assert data["watch_duration_formatted"] == f"0:{data['watch_duration_seconds']:02d}"
    assert (await _viewers(client))["watching_now"] == 1
    again = (await _json(await client.delete(WATCH, params={"session_id": sid}, headers=auth())))[
        "data"
    ]
    assert again == data


async def test_35_errors(client: TestClient[Any, Any]) -> None:
    sid = (await _watch(client))["session"]["session_id"]
    await _json(await client.delete(WATCH, params={"session_id": sid}), 401)
    await _json(
        await client.delete(WATCH, params={"session_id": sid}, headers=auth("intruder")), 403
    )
    await _json(
        await client.delete(WATCH, params={"session_id": "sess_watch_x"}, headers=auth()), 404
    )
    assert (await _json(await client.delete(WATCH, headers=auth()), 422))["field"] == "session_id"
    bad = await _json(await client.delete(WATCH, params={"session_id": "a b"}, headers=auth()), 422)
    assert bad["field"] == "session_id"
    assert (await _viewers(client))["watching_now"] == 1


async def test_36_heartbeat_delta_token_and_epg(client: TestClient[Any, Any]) -> None:
    started = await _watch(client)
    sid = started["session"]["session_id"]
    first = await _beat(client, sid)
    assert first["session_valid"] is True and "reason" not in first
    assert first["expires_at"] == started["session"]["expires_at"]
    assert first["viewers"] == {"watching_now": 1, "watching_now_formatted": "1", "delta": 0}
    assert first["stream"]["health"] == "good" and first["stream"]["is_live"] is True
    assert verify_stream_token(TEST_SECRET, first["stream"]["token"])["sid"] == sid
    assert first["epg"]["current_program"]["program_id"] == "prog_002"
    assert first["epg"]["next_program"]["program_id"] == "prog_003"
    assert first["epg"]["next_program"]["start_time_formatted"].endswith(("AM", "PM"))
    assert first["next_heartbeat_seconds"] == 30
    await _watch(client, "user_b")
    await _watch(client, "user_c")
    assert (await _beat(client, sid))["viewers"]["delta"] == 2
    assert (await _beat(client, sid))["viewers"]["delta"] == 0


async def test_36_after_end_the_session_is_invalid(client: TestClient[Any, Any]) -> None:
    sid = (await _watch(client))["session"]["session_id"]
    await client.delete(WATCH, params={"session_id": sid}, headers=auth())
    data = await _beat(client, sid)
    assert (data["session_valid"], data["reason"], data["stream"]) == (False, "user_exit", None)
    assert data["next_heartbeat_seconds"] == 0
    assert (await _viewers(client))["watching_now"] == 0  # a late heartbeat does not revive it


async def test_36_errors(client: TestClient[Any, Any]) -> None:
    sid = (await _watch(client))["session"]["session_id"]
    await _json(await client.get(f"{LIVE}/heartbeat", params={"session_id": sid}), 401)
    assert (await _beat(client, sid, "intruder", 403))["code"] == 403
    assert (await _beat(client, "sess_watch_x", status=404))["field"] == "session_id"


async def test_36_session_past_its_lifetime_is_ended(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client(session_max_age=1.0)
    sid = (await _watch(client))["session"]["session_id"]
    await asyncio.sleep(1.5)
    data = await _beat(client, sid)
    assert (data["session_valid"], data["reason"]) == (False, "expired")
    assert (await _viewers(client))["watching_now"] == 0
    # The expired session no longer holds a slot.
    await _json(
        await client.patch(WATCH, json={"session_id": sid, "quality": "720p"}, headers=auth()), 409
    )


async def test_quiet_sessions_stop_counting_after_ttl(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client(session_ttl=1.0)
    quiet = (await _watch(client, "user_a"))["session"]["session_id"]
    kept = (await _watch(client, "user_b"))["session"]["session_id"]
    assert (await _viewers(client))["watching_now"] == 2
    for _ in range(4):  # user_b keeps beating; user_a goes quiet
        await asyncio.sleep(0.4)
        await _beat(client, kept, "user_b")
    assert (await _viewers(client))["watching_now"] == 1
    # A late heartbeat brings the quiet session back (a player waking up).
    assert (await _beat(client, quiet, "user_a"))["session_valid"] is True
    assert (await _viewers(client))["watching_now"] == 2


async def test_peaks_are_never_lowered(client: TestClient[Any, Any]) -> None:
    sids = [(await _watch(client, f"user_{i}"))["session"]["session_id"] for i in range(3)]
    for i, sid in enumerate(sids[:2]):
        await client.delete(WATCH, params={"session_id": sid}, headers=auth(f"user_{i}"))
    v = await _viewers(client)
    assert (v["watching_now"], v["peak_today"], v["peak_all_time"]) == (1, 3, 3)
    await _watch(client, "user_9")
    v = await _viewers(client)
    assert (v["watching_now"], v["peak_today"], v["peak_all_time"]) == (2, 3, 3)
