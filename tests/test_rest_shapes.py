"""Shape conformance: each demo-world response has every key path of the seed's example.

The seed's bodies are copied verbatim into tests/fixtures/. A key path matches
when the response has the key and a value of the same JSON type; null in the
example matches anything; an empty object or list in the example matches any
object or list; each element of a non-empty example list must match some
element of the response's list. Error bodies are compared exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import auth

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", dict: "object", list: "array", type(None): "null"}[type(value)]


def shape_errors(example: Any, actual: Any, path: str = "$") -> list[str]:
    """Key paths of `example` that `actual` lacks or types differently ([] when conformant)."""
    if example is None:
        return []
    want, got = _json_type(example), _json_type(actual)
    if want == "number" and got == "integer":
        got = "number"  # 4.0 may be encoded as 4 by some encoders; any JSON number is a number
    if want != got:
        return [f"{path}: expected {want}, got {got} ({actual!r})"]
    errors: list[str] = []
    if isinstance(example, dict):
        for key, value in example.items():
            if key not in actual:
                errors.append(f"{path}.{key}: missing")
            else:
                errors += shape_errors(value, actual[key], f"{path}.{key}")
    elif isinstance(example, list):
        for i, item in enumerate(example):
            if not any(not shape_errors(item, candidate) for candidate in actual):
                best = min(
                    (shape_errors(item, c, f"{path}[{i}]") for c in actual),
                    key=len,
                    default=[f"{path}[{i}]: list is empty"],
                )
                errors += best
    return errors


def test_shape_checker_catches_differences() -> None:
    example = {"a": 1, "b": {"c": "x"}, "d": [{"e": True}], "f": None, "g": {}, "h": []}
    assert (
        shape_errors(
            example,
            {
                "a": 2,
                "b": {"c": "y", "z": 1},
                "d": [{"e": False}],
                "f": 3,
                "g": {"k": 1},
                "h": [1, 2],
            },
        )
        == []
    )
    assert shape_errors(example, {"a": "1", "b": {}, "d": [], "f": None, "g": [], "h": {}}) == [
        "$.a: expected integer, got string ('1')",
        "$.b.c: missing",
        "$.d[0]: list is empty",
        "$.g: expected object, got array ([])",
        "$.h: expected array, got object ({})",
    ]
    assert shape_errors({"n": 1}, {"n": True}) == ["$.n: expected integer, got boolean (True)"]
    assert shape_errors({"p": 3.99}, {"p": 4}) == []


async def _conforms(resp: Any, name: str, status: int = 200) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert shape_errors(fixture(name), body) == []
    return dict(body)


async def test_28_live_and_offline(client: TestClient[Any, Any]) -> None:
    await _conforms(await client.get("/creators/creator_001/channel/live"), "28_response_live")
    offline = await _conforms(
        await client.get("/creators/creator_003/channel/live"), "28_response_offline"
    )
    assert set(offline["data"]) == set(fixture("28_response_offline")["data"])


async def test_29_to_32(client: TestClient[Any, Any]) -> None:
    await _conforms(
        await client.get(
            "/creators/creator_001/channel/live/stream",
            params={"quality": "auto", "dvr": "true"},
            headers=auth(),
        ),
        "29_response",
    )
    await _conforms(await client.get("/creators/creator_001/channel/live/viewers"), "30_response")
    await _conforms(await client.get("/creators/creator_001/channel/live/metadata"), "31_response")
    started = await client.post(
        "/creators/creator_001/channel/live/watch", json=fixture("33_request"), headers=auth()
    )
    session_id = (await started.json())["data"]["session"]["session_id"]
    await _conforms(
        await client.get(
            "/creators/creator_001/channel/live/qualities",
            params={"session_id": session_id},
            headers=auth(),
        ),
        "32_response",
    )


async def test_33_to_36(client: TestClient[Any, Any]) -> None:
    body = await _conforms(
        await client.post(
            "/creators/creator_001/channel/live/watch", json=fixture("33_request"), headers=auth()
        ),
        "33_response",
    )
    session_id = body["data"]["session"]["session_id"]
    patch = {**fixture("34_request"), "session_id": session_id}
    await _conforms(
        await client.patch("/creators/creator_001/channel/live/watch", json=patch, headers=auth()),
        "34_response",
    )
    await _conforms(
        await client.get(
            "/creators/creator_001/channel/live/heartbeat",
            params={"session_id": session_id},
            headers=auth(),
        ),
        "36_response",
    )
    ended = await _conforms(
        await client.delete(
            "/creators/creator_001/channel/live/watch",
            params={"session_id": session_id},
            headers=auth(),
        ),
        "35_response",
    )
    assert ended["message"] == "Watch session ended"


async def test_37(client: TestClient[Any, Any]) -> None:
    body = await _conforms(
        await client.get(
            "/creators/creator_001/channel/ondemand",
            params={"type": "all", "page": "1", "limit": "20"},
            headers=auth(),
        ),
        "37_response",
    )
    assert body["data"]["total"] == 9


async def test_33_error_bodies_are_the_seeds(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/creators/creator_002/channel/live/watch",
        json={"channel_id": "ch_102", "device_type": "web"},
        headers=auth(),
    )
    assert (resp.status, await resp.json()) == (403, fixture("33_error_403"))
    resp = await client.post(
        "/creators/creator_003/channel/live/watch",
        json={"channel_id": "ch_103", "device_type": "web"},
        headers=auth(),
    )
    assert (resp.status, await resp.json()) == (404, fixture("33_error_404"))
    for _ in range(3):
        ok = await client.post(
            "/creators/creator_001/channel/live/watch", json=fixture("33_request"), headers=auth()
        )
        assert ok.status == 200
    resp = await client.post(
        "/creators/creator_001/channel/live/watch", json=fixture("33_request"), headers=auth()
    )
    assert (resp.status, await resp.json()) == (429, fixture("33_error_429"))
