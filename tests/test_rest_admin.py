"""Admin API: who may call it, the shapes it accepts, and that changes show on endpoints 28–37."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import auth

ADMIN = auth("ops", admin=True)


async def _json(resp: Any, status: int = 200) -> Any:
    body = await resp.json()
    assert resp.status == status, body
    return body


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def _new_world(client: TestClient[Any, Any], headers: dict[str, str] = ADMIN) -> None:
    await _json(
        await client.post(
            "/admin/creators", json={"creator_id": "creator_010", "name": "Ann Lee"}, headers=ADMIN
        ),
        201,
    )
    await _json(
        await client.post(
            "/admin/creators/creator_010/channel",
            json={"channel_id": "ch_110", "channel_name": "Ann Live", "channel_number": 110},
            headers=headers,
        ),
        201,
    )


async def test_only_admins_create_creators(client: TestClient[Any, Any]) -> None:
    body = {"creator_id": "creator_010", "name": "Ann Lee"}
    await _json(await client.post("/admin/creators", json=body), 401)
    await _json(await client.post("/admin/creators", json=body, headers=auth("user_123")), 403)
    created = (await _json(await client.post("/admin/creators", json=body, headers=ADMIN), 201))[
        "data"
    ]
    assert (created["creator_id"], created["name"], created["is_verified"]) == (
        "creator_010",
        "Ann Lee",
        False,
    )
    dup = await _json(await client.post("/admin/creators", json=body, headers=ADMIN), 409)
    assert dup["field"] == "creator_id"
    for bad, field in [
        ({"creator_id": "x"}, "name"),
        ({**body, "creator_id": "has space"}, "creator_id"),
        ({**body, "name": ""}, "name"),
        ({**body, "is_verified": "yes"}, "is_verified"),
    ]:
        assert (await _json(await client.post("/admin/creators", json=bad, headers=ADMIN), 422))[
            "field"
        ] == field


async def test_update_creator_rules(client: TestClient[Any, Any]) -> None:
    await _json(
        await client.patch(
            "/admin/creators/creator_001", json={"name": "C. Spencer"}, headers=auth("creator_001")
        )
    )
    live = (await _json(await client.get("/creators/creator_001/channel/live")))["data"]
    assert live["creator_name"] == "C. Spencer"
    denied = await _json(
        await client.patch(
            "/admin/creators/creator_001", json={"is_verified": False}, headers=auth("creator_001")
        ),
        403,
    )
    assert denied["field"] == "is_verified"
    await _json(
        await client.patch(
            "/admin/creators/creator_001", json={"name": "x"}, headers=auth("creator_002")
        ),
        403,
    )
    await _json(
        await client.patch("/admin/creators/nobody", json={"name": "x"}, headers=ADMIN), 404
    )


async def test_channels(client: TestClient[Any, Any]) -> None:
    await _new_world(client)
    live = (await _json(await client.get("/creators/creator_010/channel/live")))["data"]
    assert (live["is_live"], live["channel"]["channel_number"]) == (False, 110)
    clash = await _json(
        await client.post(
            "/admin/creators/creator_010/channel",
            json={"channel_id": "ch_111", "channel_name": "Two", "channel_number": 111},
            headers=ADMIN,
        ),
        409,
    )
    assert clash["field"] == "creator_id"  # one channel per creator
    await _json(
        await client.post(
            "/admin/creators", json={"creator_id": "creator_011", "name": "Bo"}, headers=ADMIN
        ),
        201,
    )
    taken = await _json(
        await client.post(
            "/admin/creators/creator_011/channel",
            json={"channel_id": "ch_111", "channel_name": "Bo TV", "channel_number": 101},
            headers=ADMIN,
        ),
        409,
    )
    assert taken["field"] == "channel_number"
    missing = await _json(
        await client.post(
            "/admin/creators/nobody/channel",
            json={"channel_id": "ch_112", "channel_name": "X", "channel_number": 112},
            headers=ADMIN,
        ),
        404,
    )
    assert missing["field"] == "creator_id"
    patched = (
        await _json(
            await client.patch(
                "/admin/channels/ch_110", json={"requires_subscription": True}, headers=ADMIN
            )
        )
    )["data"]
    assert patched["requires_subscription"] is True and patched["channel_name"] == "Ann Live"
    await _json(
        await client.patch("/admin/channels/ch_999", json={"channel_name": "x"}, headers=ADMIN), 404
    )
    bad = await _json(
        await client.patch("/admin/channels/ch_110", json={"channel_number": 0}, headers=ADMIN), 422
    )
    assert bad["field"] == "channel_number"


async def test_go_live_health_and_offline(client: TestClient[Any, Any]) -> None:
    await _new_world(client)
    creator = auth("creator_010")
    await _json(
        await client.post(
            "/admin/channels/ch_110/live", json={"title": "Hi"}, headers=auth("creator_001")
        ),
        403,
    )
    stream = (
        await _json(
            await client.post(
                "/admin/channels/ch_110/live",
                json={"title": "Opening Night", "stream_id": "stream_ann1"},
                headers=creator,
            ),
            201,
        )
    )["data"]
    assert (stream["stream_id"], stream["is_live"], stream["ended_at"]) == (
        "stream_ann1",
        True,
        None,
    )
    again = await _json(
        await client.post("/admin/channels/ch_110/live", json={"title": "x"}, headers=creator), 409
    )
    assert again["field"] == "channel_id"
    live = (await _json(await client.get("/creators/creator_010/channel/live")))["data"]
    assert live["is_live"] is True and live["channel"]["stream"]["title"] == "Opening Night"

    watch = (
        await _json(
            await client.post(
                "/creators/creator_010/channel/live/watch",
                json={"channel_id": "ch_110", "device_type": "ios"},
                headers=auth(),
            )
        )
    )["data"]
    sid = watch["session"]["session_id"]
    bad = await _json(
        await client.patch(
            "/admin/channels/ch_110/live", json={"health": "awful"}, headers=creator
        ),
        422,
    )
    assert bad["field"] == "health"
    await _json(
        await client.patch("/admin/channels/ch_110/live", json={"health": "poor"}, headers=creator)
    )
    meta = (await _json(await client.get("/creators/creator_010/channel/live/metadata")))["data"]
    assert meta["stream_health"] == "poor"
    beat = (
        await _json(
            await client.get(
                "/creators/creator_010/channel/live/heartbeat",
                params={"session_id": sid},
                headers=auth(),
            )
        )
    )["data"]
    assert beat["stream"]["health"] == "poor"

    off = (await _json(await client.delete("/admin/channels/ch_110/live", headers=creator)))["data"]
    assert (off["is_live"], off["ended_sessions"]) == (False, 1)
    assert off["ended_at"] is not None
    beat = (
        await _json(
            await client.get(
                "/creators/creator_010/channel/live/heartbeat",
                params={"session_id": sid},
                headers=auth(),
            )
        )
    )["data"]
    assert (beat["session_valid"], beat["reason"]) == (False, "stream_offline")
    assert (await _json(await client.get("/creators/creator_010/channel/live")))["data"][
        "is_live"
    ] is False
    await _json(await client.delete("/admin/channels/ch_110/live", headers=creator), 404)
    await _json(
        await client.patch("/admin/channels/ch_110/live", json={"health": "good"}, headers=creator),
        404,
    )
    # A new broadcast gets a generated id.
    fresh = (
        await _json(
            await client.post(
                "/admin/channels/ch_110/live", json={"title": "Again"}, headers=ADMIN
            ),
            201,
        )
    )["data"]
    assert fresh["stream_id"].startswith("stream_") and fresh["stream_id"] != "stream_ann1"


async def test_programs_feed_the_epg(client: TestClient[Any, Any]) -> None:
    await _new_world(client)
    await _json(
        await client.post("/admin/channels/ch_110/live", json={"title": "Now"}, headers=ADMIN), 201
    )
    now = datetime.now(UTC).replace(microsecond=0)
    prog = {
        "program_id": "prog_ann_1",
        "title": "Ann Opens",
        "starts_at": _iso(now - timedelta(minutes=10)),
        "ends_at": _iso(now + timedelta(minutes=50)),
        "description": "First show",
    }
    created = (
        await _json(
            await client.post("/admin/channels/ch_110/programs", json=prog, headers=ADMIN), 201
        )
    )["data"]
    assert (created["channel_id"], created["description"]) == ("ch_110", "First show")
    await _json(await client.post("/admin/channels/ch_110/programs", json=prog, headers=ADMIN), 409)
    inverted = {**prog, "program_id": "p2", "ends_at": prog["starts_at"]}
    assert (
        await _json(
            await client.post("/admin/channels/ch_110/programs", json=inverted, headers=ADMIN), 422
        )
    )["field"] == "ends_at"
    naive = {**prog, "program_id": "p3", "starts_at": "2024-11-01T18:00:00"}
    assert (
        await _json(
            await client.post("/admin/channels/ch_110/programs", json=naive, headers=ADMIN), 422
        )
    )["field"] == "starts_at"
    await _json(await client.post("/admin/channels/ch_999/programs", json=prog, headers=ADMIN), 404)
    await _json(
        await client.post(
            "/admin/channels/ch_110/programs", json=prog, headers=auth("creator_001")
        ),
        403,
    )

    watch = (
        await _json(
            await client.post(
                "/creators/creator_010/channel/live/watch",
                json={"channel_id": "ch_110", "device_type": "web"},
                headers=auth(),
            )
        )
    )["data"]
    assert watch["epg"]["current_program"]["program_id"] == "prog_ann_1"
    assert watch["epg"]["current_program"]["elapsed_minutes"] == 10
    assert watch["epg"]["next_program"] is None
    assert [e["program_id"] for e in watch["epg"]["schedule"]] == ["prog_ann_1"]

    renamed = (
        await _json(
            await client.patch(
                "/admin/programs/prog_ann_1",
                json={"title": "Ann Opens Big", "description": None},
                headers=ADMIN,
            )
        )
    )["data"]
    assert (renamed["title"], renamed["description"], renamed["starts_at"]) == (
        "Ann Opens Big",
        None,
        prog["starts_at"],
    )
    bad = await _json(
        await client.patch(
            "/admin/programs/prog_ann_1",
            json={"ends_at": _iso(now - timedelta(hours=1))},
            headers=ADMIN,
        ),
        422,
    )
    assert bad["field"] == "ends_at"
    sid = watch["session"]["session_id"]
    beat = (
        await _json(
            await client.get(
                "/creators/creator_010/channel/live/heartbeat",
                params={"session_id": sid},
                headers=auth(),
            )
        )
    )["data"]
    assert beat["epg"]["current_program"]["title"] == "Ann Opens Big"
    deleted = (await _json(await client.delete("/admin/programs/prog_ann_1", headers=ADMIN)))[
        "data"
    ]
    assert deleted == {"program_id": "prog_ann_1", "channel_id": "ch_110", "deleted": True}
    await _json(await client.delete("/admin/programs/prog_ann_1", headers=ADMIN), 404)
    beat = (
        await _json(
            await client.get(
                "/creators/creator_010/channel/live/heartbeat",
                params={"session_id": sid},
                headers=auth(),
            )
        )
    )["data"]
    assert beat["epg"] == {"current_program": None, "next_program": None}


async def test_content(client: TestClient[Any, Any]) -> None:
    url = "/admin/creators/creator_001/content"
    ppv = {"content_id": "ppv_002", "type": "ppv", "title": "Encore", "duration_seconds": 3600}
    assert (await _json(await client.post(url, json=ppv, headers=ADMIN), 422))["field"] == "price"
    assert (await _json(await client.post(url, json={**ppv, "price": 5}, headers=ADMIN), 422))[
        "field"
    ] == "currency"
    free_priced = {**ppv, "content_id": "ep_100", "type": "free", "price": 1.0, "currency": "USD"}
    assert (await _json(await client.post(url, json=free_priced, headers=ADMIN), 422))[
        "field"
    ] == "price"
    bad_currency = {**ppv, "price": 5.5, "currency": "usd"}
    assert (await _json(await client.post(url, json=bad_currency, headers=ADMIN), 422))[
        "field"
    ] == "currency"
    created = (
        await _json(
            await client.post(
                url, json={**ppv, "price": 5.5, "currency": "EUR"}, headers=auth("creator_001")
            ),
            201,
        )
    )["data"]
    assert (created["price"], created["currency"], created["creator_id"]) == (
        5.5,
        "EUR",
        "creator_001",
    )
    await _json(
        await client.post(url, json={**ppv, "price": 5.5, "currency": "EUR"}, headers=ADMIN), 409
    )
    await _json(
        await client.post(
            "/admin/creators/nobody/content",
            json={**ppv, "content_id": "z", "price": 1, "currency": "USD"},
            headers=ADMIN,
        ),
        404,
    )
    listing = (
        await _json(
            await client.get("/creators/creator_001/channel/ondemand", params={"type": "ppv"})
        )
    )["data"]
    assert listing["total"] == 2
    patched = (
        await _json(
            await client.patch("/admin/content/ppv_002", json={"price": 7.25}, headers=ADMIN)
        )
    )["data"]
    assert patched["price"] == 7.25
    await _json(
        await client.patch("/admin/content/ppv_002", json={"type": "free"}, headers=ADMIN), 422
    )
    await _json(
        await client.patch(
            "/admin/content/ppv_002", json={"title": "x"}, headers=auth("creator_002")
        ),
        403,
    )
    gone = (await _json(await client.delete("/admin/content/ppv_002", headers=ADMIN)))["data"]
    assert gone == {"content_id": "ppv_002", "deleted": True}
    await _json(await client.delete("/admin/content/ppv_002", headers=ADMIN), 404)


async def test_entitlements(client: TestClient[Any, Any]) -> None:
    url = "/admin/entitlements"
    ch102 = {"channel_id": "ch_102", "device_type": "web"}
    watch102 = "/creators/creator_002/channel/live/watch"
    await _json(await client.post(watch102, json=ch102, headers=auth()), 403)
    sub = {"user_id": "user_123", "kind": "subscription", "creator_id": "creator_002"}
    await _json(await client.post(url, json=sub, headers=auth("creator_002")), 403)
    granted = (await _json(await client.post(url, json=sub, headers=ADMIN), 201))["data"]
    assert granted == {**sub, "content_id": None, "expires_at": None}
    await _json(await client.post(watch102, json=ch102, headers=auth()))
    # An expired subscription is no subscription.
    past = _iso(datetime.now(UTC) - timedelta(days=1))
    await _json(await client.post(url, json={**sub, "expires_at": past}, headers=ADMIN), 201)
    await _json(await client.post(watch102, json=ch102, headers=auth()), 403)

    await _json(
        await client.post(
            url,
            json={"user_id": "user_123", "kind": "follow", "creator_id": "creator_001"},
            headers=ADMIN,
        ),
        201,
    )
    state = (await _json(await client.get("/creators/creator_001/channel/live", headers=auth())))[
        "data"
    ]
    assert state["user_state"] == {"is_following": True, "is_subscribed": False}

    await _json(
        await client.post(
            url, json={"user_id": "user_123", "kind": "ppv", "content_id": "ppv_001"}, headers=ADMIN
        ),
        201,
    )
    items = (
        await _json(await client.get("/creators/creator_001/channel/ondemand", headers=auth()))
    )["data"]
    locked = {i["content_id"]: i["is_locked"] for i in items["content"]}
    assert (locked["ppv_001"], locked["prem_001"]) == (False, True)

    for body, field, status in [
        ({"user_id": "u", "kind": "ppv"}, "content_id", 422),
        ({"user_id": "u", "kind": "follow"}, "creator_id", 422),
        ({"user_id": "u", "kind": "gift", "creator_id": "creator_001"}, "kind", 422),
        ({"user_id": "u", "kind": "ppv", "content_id": "nope"}, "content_id", 404),
        ({"user_id": "u", "kind": "subscription", "creator_id": "nobody"}, "creator_id", 404),
    ]:
        assert (await _json(await client.post(url, json=body, headers=ADMIN), status))[
            "field"
        ] == field
