"""DROPTV_ALLOWED_ORIGINS: CORS preflights and headers for the REST API, and the websocket Origin
check (403 before the upgrade). Real app on a loopback port; real preflight requests."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import pytest

from server.config import Settings
from server.cors import parse_origins
from tests.conftest import AppClientFactory, auth
from tests.wsutil import PROTOCOL, start_watch

ALLOWED = "https://player.example, http://localhost:3000/"
WATCH = "/creators/creator_001/channel/live/watch"
PLAYER = "https://player.example"


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }


def test_the_list_is_read_from_the_environment() -> None:
    settings = Settings.from_env({"DROPTV_ALLOWED_ORIGINS": ALLOWED})
    assert parse_origins(settings.allowed_origins) == {PLAYER, "http://localhost:3000"}
    assert parse_origins("") == frozenset()


async def test_preflight_answers_exactly_the_listed_origins(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client(allowed_origins=ALLOWED)
    resp = await client.options(WATCH, headers=preflight(PLAYER))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == PLAYER
    assert resp.headers["Access-Control-Allow-Methods"] == "DELETE, OPTIONS, PATCH, POST"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"]
    assert int(resp.headers["Access-Control-Max-Age"]) > 0
    resp = await client.options(
        "/creators/creator_001/channel/live", headers=preflight("http://localhost:3000", "GET")
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    for origin in ("https://evil.example", "https://player.example.evil", "null"):
        resp = await client.options(WATCH, headers=preflight(origin))
        assert resp.status == 403, origin
        assert not [h for h in resp.headers if h.lower().startswith("access-control-")]
    resp = await client.options("/no/such/route", headers=preflight(PLAYER))
    assert resp.status == 404


async def test_every_route_answers_its_preflight(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client(allowed_origins=ALLOWED)
    checked = 0
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "OPTIONS") or not path or path.endswith("/ws"):
            continue
        url = path.replace("{", "").replace("}", "")
        resp = await client.options(url, headers=preflight(PLAYER, route.method))
        assert resp.status == 204, (route.method, path, resp.status)
        assert route.method in resp.headers["Access-Control-Allow-Methods"]
        checked += 1
    assert checked > 30


async def test_actual_requests_carry_the_origin_and_expose_the_request_id(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client(allowed_origins=ALLOWED)
    resp = await client.post(
        WATCH,
        headers={**auth(), "Origin": PLAYER},
        json={"channel_id": "ch_101", "device_type": "web"},
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == PLAYER
    assert "X-Request-Id" in resp.headers["Access-Control-Expose-Headers"]
    assert "Origin" in resp.headers.getall("Vary")
    # Errors carry it too, or the page could not read the error envelope.
    resp = await client.post(WATCH, headers={"Origin": PLAYER}, json={})
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == PLAYER
    resp = await client.get(
        "/creators/creator_001/channel/live", headers={"Origin": "https://evil.example"}
    )
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_by_default_no_origin_is_allowed(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client()
    resp = await client.options(WATCH, headers=preflight(PLAYER))
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.get("/creators/creator_001/channel/live", headers={"Origin": PLAYER})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def _upgrade(http: aiohttp.ClientSession, base: str, sid: str, origin: str | None) -> Any:
    headers = {**auth(), **({"Origin": origin} if origin else {})}
    try:
        ws = await http.ws_connect(
            f"{base.replace('http://', 'ws://')}/creators/creator_001/channel/live/ws",
            params={"session_id": sid},
            protocols=(PROTOCOL,),
            headers=headers,
        )
    except aiohttp.WSServerHandshakeError as err:
        return err.status
    first = await ws.receive_json(timeout=5)
    await ws.close()
    return first["type"]


@pytest.mark.parametrize("configured", [True, False])
async def test_websocket_origin_is_checked_before_the_upgrade(
    make_client: AppClientFactory, demo_db: asyncpg.Pool, configured: bool
) -> None:
    client = await make_client(allowed_origins=ALLOWED if configured else "")
    base = str(client.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        sid = await start_watch(http, base)
        evil = await _upgrade(http, base, sid, "https://evil.example")
        assert evil == (403 if configured else "hello")
        assert await _upgrade(http, base, sid, PLAYER) == "hello"
        assert await _upgrade(http, base, sid, base) == "hello"  # same origin: the watch page
        assert await _upgrade(http, base, sid, None) == "hello"  # native clients send none
