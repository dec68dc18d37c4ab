"""Endpoint 37: filters, paging, locking per entitlements, formatting, bad input."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import auth, token

URL = "/creators/creator_001/channel/ondemand"


async def _page(
    client: TestClient[Any, Any], status: int = 200, user: str | None = None, **params: Any
) -> Any:
    resp = await client.get(
        URL, params={k: str(v) for k, v in params.items()}, headers=auth(user) if user else {}
    )
    body = await resp.json()
    assert resp.status == status, body
    return body["data"] if status == 200 else body


def _by_id(data: Any) -> dict[str, Any]:
    return {item["content_id"]: item for item in data["content"]}


async def test_all_content_anonymous(client: TestClient[Any, Any]) -> None:
    data = await _page(client)
    assert (data["creator_id"], data["total"], data["page"], data["limit"]) == (
        "creator_001",
        9,
        1,
        20,
    )
    items = _by_id(data)
    assert items["ep_001"] == {
        "content_id": "ep_001",
        "type": "free",
        "title": "E1: Pilot Episode",
        "thumbnail_url": "https://cdn.droptv.com/episodes/ep_001/thumb.jpg",
        "duration_seconds": 1472,
        "duration_formatted": "24:32",
        "season": 1,
        "episode_number": 1,
        "is_free": True,
        "is_locked": False,
        "views": 1200000,
        "views_formatted": "1.2M",
        "stream_url": "https://cdn.droptv.com/episodes/ep_001/stream.m3u8",
    }
    prem = items["prem_001"]
    assert (prem["type"], prem["duration_formatted"], prem["is_free"], prem["is_locked"]) == (
        "premium",
        "45:00",
        False,
        True,
    )
    assert prem["stream_url"] is None
    assert "season" not in prem and "price" not in prem
    assert prem["thumbnail_url"] == "https://cdn.droptv.com/premium/prem_001/thumb.jpg"
    ppv = items["ppv_001"]
    assert (ppv["duration_formatted"], ppv["price"], ppv["currency"], ppv["is_locked"]) == (
        "1:15:00",
        3.99,
        "USD",
        True,
    )
    assert ppv["stream_url"] is None
    # Stable order: episodes by season and number, then the rest.
    ids = [item["content_id"] for item in data["content"]]
    assert ids[:6] == ["ep_001", "ep_002", "ep_003", "ep_004", "ep_005", "ep_006"]


async def test_locking_follows_entitlements(client: TestClient[Any, Any]) -> None:
    plain = _by_id(await _page(client, user="user_123"))
    assert (plain["prem_001"]["is_locked"], plain["ppv_001"]["is_locked"]) == (True, True)
    vip = _by_id(await _page(client, user="user_vip"))  # subscribed, bought ppv_001
    assert vip["prem_001"]["is_locked"] is False
    assert vip["prem_001"]["stream_url"] == "https://cdn.droptv.com/premium/prem_001/stream.m3u8"
    assert vip["ppv_001"]["is_locked"] is False
    assert vip["ppv_001"]["stream_url"] == "https://cdn.droptv.com/ppv/ppv_001/stream.m3u8"
    owner = _by_id(await _page(client, user="creator_001"))
    assert not any(item["is_locked"] for item in owner.values())


async def test_filters_and_paging(client: TestClient[Any, Any]) -> None:
    free = await _page(client, type="free")
    assert free["total"] == 6 and {i["type"] for i in free["content"]} == {"free"}
    assert (await _page(client, type="premium"))["total"] == 2
    assert [i["content_id"] for i in (await _page(client, type="ppv"))["content"]] == ["ppv_001"]
    season2 = await _page(client, season=2)
    assert [i["content_id"] for i in season2["content"]] == ["ep_005", "ep_006"]
    assert (await _page(client, type="premium", season=1))["total"] == 0
    pages = [await _page(client, page=p, limit=4) for p in (1, 2, 3)]
    assert [len(p["content"]) for p in pages] == [4, 4, 1]
    assert {p["total"] for p in pages} == {9}
    seen = [i["content_id"] for p in pages for i in p["content"]]
    assert len(set(seen)) == 9
    beyond = await _page(client, page=10, limit=4)
    assert (beyond["total"], beyond["content"], beyond["page"]) == (9, [], 10)
    assert len((await _page(client, limit=100))["content"]) == 9


async def test_bad_query_names_the_field(client: TestClient[Any, Any]) -> None:
    for params, field in [
        ({"page": 0}, "page"),
        ({"limit": 1000}, "limit"),
        ({"limit": 0}, "limit"),
        ({"type": "vip"}, "type"),
        ({"season": "one"}, "season"),
        ({"page": "-1"}, "page"),
        ({"season": 0}, "season"),
    ]:
        body = await _page(client, 422, **params)
        assert body["field"] == field, params


async def test_unknown_creator_and_bad_token(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/creators/nobody/channel/ondemand")
    assert resp.status == 404
    assert (await resp.json())["message"] == "Creator not found"
    resp = await client.get(URL, headers={"Authorization": f"Bearer {token(ttl=-5)}"})
    assert resp.status == 401
