"""Endpoints 28–32 on the demo world: values, auth, entitlement, ownership, offline paths."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from server.auth import verify_stream_token
from tests.conftest import TEST_SECRET, auth, token

LIVE = "/creators/creator_001/channel/live"


async def _json(resp: Any, status: int = 200) -> Any:
    body = await resp.json()
    assert resp.status == status, body
    return body


async def _watch(
    client: TestClient[Any, Any],
    user: str = "user_123",
    device: str = "web",
    creator: str = "creator_001",
    channel: str = "ch_101",
) -> str:
    resp = await client.post(
        f"/creators/{creator}/channel/live/watch",
        json={"channel_id": channel, "device_type": device},
        headers=auth(user),
    )
    return str((await _json(resp))["data"]["session"]["session_id"])


async def test_28_live(client: TestClient[Any, Any]) -> None:
    data = (await _json(await client.get(LIVE)))["data"]
    assert (data["creator_id"], data["creator_name"], data["is_live"]) == (
        "creator_001",
        "Chris Spencer",
        True,
    )
    ch = data["channel"]
    assert (ch["channel_id"], ch["channel_name"], ch["channel_number"], ch["watching_now"]) == (
        "ch_101",
        "Chris Spencer 24/7",
        101,
        0,
    )
    assert ch["stream"]["stream_id"] == "stream_abc123"
    assert ch["stream"]["title"] == "Behind the Laughs"
    assert ch["stream"]["started_at"].endswith("Z")
    assert ch["stream"]["stream_url"] == "https://cdn.droptv.com/streams/stream_abc123/stream.m3u8"
    assert data["user_state"] == {"is_following": False, "is_subscribed": False}


async def test_28_user_state_follows_the_token(client: TestClient[Any, Any]) -> None:
    data = (await _json(await client.get(LIVE, headers=auth("user_vip"))))["data"]
    assert data["user_state"] == {"is_following": True, "is_subscribed": True}


async def test_28_counts_watchers(client: TestClient[Any, Any]) -> None:
    await _watch(client, "u1")
    await _watch(client, "u2")
    data = (await _json(await client.get(LIVE)))["data"]
    assert (data["channel"]["watching_now"], data["channel"]["watching_now_formatted"]) == (2, "2")


async def test_28_offline(client: TestClient[Any, Any]) -> None:
    body = await _json(await client.get("/creators/creator_003/channel/live"))
    assert body["data"] == {
        "creator_id": "creator_003",
        "is_live": False,
        "channel": {
            "channel_id": "ch_103",
            "channel_name": "Maya Brooks Radio",
            "channel_number": 103,
            "is_live": False,
            "stream": None,
        },
        "message": "Maya Brooks is currently offline",
    }


async def test_28_unknown_creator_and_bad_tokens(client: TestClient[Any, Any]) -> None:
    body = await _json(await client.get("/creators/nobody/channel/live"), 404)
    assert body == {
        "status": "error",
        "code": 404,
        "message": "Creator not found",
        "field": "creator_id",
    }
    bad = await _json(await client.get(LIVE, headers={"Authorization": "Bearer nope"}), 401)
    assert bad["field"] == "Authorization"
    expired = {"Authorization": f"Bearer {token(ttl=-60)}"}
    assert (await _json(await client.get(LIVE, headers=expired), 401))["message"] == "Token expired"


async def test_29_stream_url_token_and_dvr(client: TestClient[Any, Any]) -> None:
    data = (
        await _json(
            await client.get(
                f"{LIVE}/stream", params={"quality": "480p", "dvr": "true"}, headers=auth()
            )
        )
    )["data"]
    assert data["stream_url"] == "https://cdn.droptv.com/streams/stream_abc123/480p/stream.m3u8"
    assert data["dvr_url"] == "https://cdn.droptv.com/streams/stream_abc123/dvr.m3u8"
    assert data["available_qualities"] == ["1080p", "720p", "480p", "360p"]
    claims = verify_stream_token(TEST_SECRET, data["token"])
    assert (claims["stream_id"], claims["sub"], claims["quality"]) == (
        "stream_abc123",
        "user_123",
        "480p",
    )
    plain = (await _json(await client.get(f"{LIVE}/stream", headers=auth())))["data"]
    assert (plain["quality"], plain["dvr_url"]) == ("auto", None)
    assert plain["stream_url"] == "https://cdn.droptv.com/streams/stream_abc123/stream.m3u8"


async def test_29_errors(client: TestClient[Any, Any]) -> None:
    assert (await _json(await client.get(f"{LIVE}/stream"), 401))["field"] == "Authorization"
    bad = await _json(
        await client.get(f"{LIVE}/stream", params={"quality": "4k"}, headers=auth()), 422
    )
    assert bad["field"] == "quality"
    bad = await _json(
        await client.get(f"{LIVE}/stream", params={"dvr": "maybe"}, headers=auth()), 422
    )
    assert bad["field"] == "dvr"
    forbidden = await _json(
        await client.get("/creators/creator_002/channel/live/stream", headers=auth()), 403
    )
    assert forbidden["message"] == "Subscription required to watch this channel"
    await _json(
        await client.get("/creators/creator_002/channel/live/stream", headers=auth("user_vip"))
    )
    offline = await _json(
        await client.get("/creators/creator_003/channel/live/stream", headers=auth()), 404
    )
    assert offline["message"] == "No active live stream found for this creator"


async def test_30_viewers_by_device_and_peaks(client: TestClient[Any, Any]) -> None:
    for i, device in enumerate(["web", "web", "ios", "android", "roku", "firetv", "appletv"]):
        await _watch(client, f"user_{i}", device)
    data = (await _json(await client.get(f"{LIVE}/viewers")))["data"]
    v = data["viewers"]
    assert (data["creator_id"], data["channel_id"], data["is_live"]) == (
        "creator_001",
        "ch_101",
        True,
    )
    assert v["by_device"] == {
        "web": 2,
        "ios": 1,
        "android": 1,
        "roku": 1,
        "firetv": 1,
        "appletv": 1,
    }
    assert (v["watching_now"], v["peak_today"], v["peak_all_time"]) == (7, 7, 7)
    assert (
        v["watching_now_formatted"],
        v["peak_today_formatted"],
        v["peak_all_time_formatted"],
    ) == ("7", "7", "7")
    assert data["last_updated_at"].endswith("Z")


async def test_30_offline_channel_has_zero_counts(client: TestClient[Any, Any]) -> None:
    data = (await _json(await client.get("/creators/creator_003/channel/live/viewers")))["data"]
    assert data["is_live"] is False
    assert data["viewers"]["watching_now"] == 0
    assert set(data["viewers"]["by_device"].values()) == {0}
    assert len(data["viewers"]["by_device"]) == 6


async def test_31_metadata(client: TestClient[Any, Any]) -> None:
    data = (await _json(await client.get(f"{LIVE}/metadata")))["data"]
    assert 75 * 60 <= data["uptime_seconds"] < 80 * 60
    assert data["uptime_formatted"].startswith("1h 1")
    assert (
        data["stream_health"],
        data["latency_mode"],
        data["bitrate_kbps"],
        data["frame_rate"],
    ) == ("good", "low", 6000, 30)
    assert data["cdn"] == {
        "provider": "cloudfront",
        "region": "us-east-1",
        "edge_location": "Atlanta, GA",
    }
    assert data["drm"] == {"enabled": False, "type": None, "license_url": None}
    assert data["stream_urls"]["dvr"] == "https://cdn.droptv.com/streams/stream_abc123/dvr.m3u8"
    await _json(await client.get("/creators/creator_003/channel/live/metadata"), 404)
    await _json(await client.get("/creators/nobody/channel/live/metadata"), 404)


async def test_32_qualities(client: TestClient[Any, Any]) -> None:
    sid = await _watch(client)
    data = (
        await _json(
            await client.get(f"{LIVE}/qualities", params={"session_id": sid}, headers=auth())
        )
    )["data"]
    assert data["session_id"] == sid and data["current_quality"] == "auto"
    assert [q["value"] for q in data["available_qualities"]] == [
        "auto",
        "1080p",
        "720p",
        "480p",
        "360p",
    ]
    admin = await client.get(
        f"{LIVE}/qualities", params={"session_id": sid}, headers=auth("ops", admin=True)
    )
    assert admin.status == 200


async def test_32_errors(client: TestClient[Any, Any]) -> None:
    sid = await _watch(client)
    await _json(await client.get(f"{LIVE}/qualities", params={"session_id": sid}), 401)
    missing = await _json(await client.get(f"{LIVE}/qualities", headers=auth()), 422)
    assert missing["field"] == "session_id"
    other = await _json(
        await client.get(
            f"{LIVE}/qualities", params={"session_id": sid}, headers=auth("someone_else")
        ),
        403,
    )
    assert other["field"] == "session_id"
    await _json(
        await client.get(
            f"{LIVE}/qualities", params={"session_id": "sess_watch_nope"}, headers=auth()
        ),
        404,
    )
    # A session is addressed under its own creator only.
    await _json(
        await client.get(
            "/creators/creator_003/channel/live/qualities",
            params={"session_id": sid},
            headers=auth(),
        ),
        404,
    )
    await client.delete(f"{LIVE}/watch", params={"session_id": sid}, headers=auth())
    await _json(
        await client.get(f"{LIVE}/qualities", params={"session_id": sid}, headers=auth()), 409
    )
