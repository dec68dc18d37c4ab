"""The app starts on real PostgreSQL and answers with the error envelope."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import AppClientFactory, ServerFactory


async def test_unknown_route_gets_error_envelope(make_client: AppClientFactory) -> None:
    client: TestClient[Any, Any] = await make_client()
    resp = await client.get("/no/such/path")
    assert resp.status == 404
    assert await resp.json() == {"status": "error", "code": 404, "message": "Not Found"}


async def test_server_process_starts_and_stops(start_server: ServerFactory) -> None:
    server = await start_server()
    assert server.terminate() == 0
