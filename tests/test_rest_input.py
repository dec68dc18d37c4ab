"""Bad input on the REST API: 400/413/422 with the error envelope naming the field, never a 500."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import AppClientFactory, auth

WATCH = "/creators/creator_001/channel/live/watch"


async def _error(resp: Any, status: int) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert (body["status"], body["code"]) == ("error", status)
    return dict(body)


async def test_malformed_and_empty_bodies(client: TestClient[Any, Any]) -> None:
    json_headers = {**auth(), "Content-Type": "application/json"}
    assert (
        await _error(await client.post(WATCH, data=b'{"channel_id": ', headers=json_headers), 400)
    )["field"] == "body"
    assert (await _error(await client.post(WATCH, data=b"", headers=json_headers), 400))[
        "field"
    ] == "body"
    assert (await _error(await client.patch(WATCH, data=b"\xff\xfe", headers=json_headers), 400))[
        "field"
    ] == "body"
    xml = {**auth(), "Content-Type": "application/xml"}
    assert (await _error(await client.post(WATCH, data=b"<a/>", headers=xml), 400))[
        "field"
    ] == "Content-Type"


async def test_oversized_body_is_413(make_client: AppClientFactory, demo_db: Any) -> None:
    client = await make_client(max_body=4096)
    big = b'{"channel_id": "ch_101", "device_type": "web", "pad": "' + b"x" * 8192 + b'"}'
    body = await _error(
        await client.post(WATCH, data=big, headers={**auth(), "Content-Type": "application/json"}),
        413,
    )
    assert body["field"] == "body"
    admin = await client.post(
        "/admin/creators",
        data=big,
        headers={**auth("ops", admin=True), "Content-Type": "application/json"},
    )
    assert admin.status == 413


async def test_wrong_types_and_enums(client: TestClient[Any, Any]) -> None:
    cases = [
        ({"channel_id": "ch_101", "device_type": 3}, "device_type"),
        ({"channel_id": "ch_101", "device_type": "web", "quality": None}, "quality"),
        ({"channel_id": "ch_101", "device_type": "web", "timezone": ["UTC"]}, "timezone"),
        ({"channel_id": None, "device_type": "web"}, "channel_id"),
    ]
    for payload, field in cases:
        body = await _error(await client.post(WATCH, json=payload, headers=auth()), 422)
        assert body["field"] == field, payload
        assert field in body["message"]


async def test_wrong_method_and_unknown_path(client: TestClient[Any, Any]) -> None:
    await _error(await client.put(WATCH, json={}, headers=auth()), 405)
    await _error(await client.get("/creators/creator_001/channel/nothing"), 404)
