"""/openapi.json: valid OpenAPI 3.1, generated from the msgspec types, listing every endpoint."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from protocol import rest
from server.openapi import build_document
from server.openapi_routes import ROUTES, Route
from tests.conftest import AppClientFactory

LIVE = "/creators/{creator_id}/channel"
SEED_ENDPOINTS = [
    ("get", f"{LIVE}/live"),
    ("get", f"{LIVE}/live/stream"),
    ("get", f"{LIVE}/live/viewers"),
    ("get", f"{LIVE}/live/metadata"),
    ("get", f"{LIVE}/live/qualities"),
    ("post", f"{LIVE}/live/watch"),
    ("patch", f"{LIVE}/live/watch"),
    ("delete", f"{LIVE}/live/watch"),
    ("get", f"{LIVE}/live/heartbeat"),
    ("get", f"{LIVE}/ondemand"),
    ("post", "/analytics/live/session/start"),
    ("post", "/analytics/live/session/heartbeat"),
    ("post", "/analytics/live/session/end"),
    ("post", "/analytics/live/events"),
]
# Routes that are not JSON API endpoints (websocket upgrade, metrics text, the doc itself, probes).
UNDOCUMENTED = re.compile(r"(/ws$|^/metrics$|^/openapi\.json$|^/healthz$|^/readyz$)")
# Pages, assets, /asyncapi.json and the media-server hooks, which speak nginx-rtmp's, SRS's and
# MediaMTX's own request shapes (README: Go-live from the encoder), are not our JSON REST API.
UNDOCUMENTED_WEB = re.compile(r"^/(client|watch|docs|static|hooks)(/|$)|^/asyncapi\.json$")


@pytest.fixture
async def doc(make_client: AppClientFactory) -> dict[str, Any]:
    client: TestClient[Any, Any] = await make_client()
    resp = await client.get("/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    return dict(await resp.json())


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref


def test_schema_names_and_titles_are_unique(doc: dict[str, Any]) -> None:
    """Client generators name a type by its schema title: two Structs of one name would
    collide (msgspec then falls back to dotted module paths as component names)."""
    schemas = doc["components"]["schemas"]
    titles = [schema.get("title", name) for name, schema in schemas.items()]
    assert [t for t in set(titles) if titles.count(t) > 1] == []
    assert [name for name in schemas if "." in name] == []


def test_lists_the_seed_endpoints_and_admin(doc: dict[str, Any]) -> None:
    for method, path in SEED_ENDPOINTS:
        assert method in doc["paths"].get(path, {}), (method, path)
    admin = [(m, p) for p, ops in doc["paths"].items() if p.startswith("/admin/") for m in ops]
    assert len(admin) == 17  # 14 managing records + stream key rotation + ingest key show/rotate


def test_every_served_json_route_is_documented() -> None:
    from server.app import create_app
    from server.config import Settings

    app: web.Application = create_app(Settings(database_url="postgresql://unused/db"))
    served = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
        and r.method not in ("HEAD", "*")
        and not UNDOCUMENTED.search(r.resource.canonical)
        and not UNDOCUMENTED_WEB.search(r.resource.canonical)
    }
    documented = {(r.method.lower(), r.path) for r in ROUTES}
    assert served - documented == set()
    assert documented - served == set()


def test_bodies_and_parameters_come_from_the_types(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    watch = doc["paths"][f"{LIVE}/live/watch"]["post"]
    assert watch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WatchRequest"
    }
    assert sorted(schemas["WatchRequest"]["required"]) == ["channel_id", "device_type"]
    assert sorted(schemas["DeviceType"]["enum"]) == sorted(
        ["web", "ios", "android", "roku", "firetv", "appletv"]
    )
    assert sorted(schemas["Quality"]["enum"]) == sorted(["auto", "1080p", "720p", "480p", "360p"])
    assert set(watch["responses"]) >= {"200", "401", "403", "404", "422", "429"}
    ok = watch["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["properties"]["data"] == {"$ref": "#/components/schemas/WatchStarted"}
    params = {p["name"]: p for p in doc["paths"][f"{LIVE}/ondemand"]["get"]["parameters"]}
    assert params["creator_id"]["in"] == "path" and params["creator_id"]["required"] is True
    assert params["limit"]["schema"]["maximum"] == 100 and params["limit"]["schema"]["minimum"] == 1
    assert params["page"]["schema"]["minimum"] == 1 and params["page"]["required"] is False
    qualities = {p["name"]: p for p in doc["paths"][f"{LIVE}/live/qualities"]["get"]["parameters"]}
    assert qualities["session_id"]["required"] is True
    deleted = doc["paths"][f"{LIVE}/live/watch"]["delete"]["responses"]["200"]
    assert "message" in deleted["content"]["application/json"]["schema"]["properties"]
    assert doc["paths"][f"{LIVE}/live/watch"]["post"]["security"] == [{"bearer": []}]


def test_adding_a_route_is_one_line() -> None:
    extra = Route(
        "GET",
        "/creators/{creator_id}/channel/live/extra",
        "Extra",
        rest.ChannelViewers,
        query=rest.SessionQuery,
    )
    doc = build_document([*ROUTES, extra])
    op = doc["paths"]["/creators/{creator_id}/channel/live/extra"]["get"]
    assert [p["name"] for p in op["parameters"]] == ["creator_id", "session_id"]
    assert "ChannelViewers" in doc["components"]["schemas"]


def test_every_operation_documents_the_errors_its_shape_can_give(doc: dict[str, Any]) -> None:
    """What the fuzzer (tests/test_fuzz_openapi.py) holds the server to: 4xx by shape, 503 always."""
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        codes = {int(c) for c in op["responses"] if c != str(route.status)}
        expected = {503, *route.errors}
        if route.body is not None:
            expected |= {400, 413, 422}
            assert op["requestBody"]["required"] is True, route.path
        if route.query is not None:
            expected.add(422)
        if "{" in route.path:
            expected.add(404)
        if route.auth != "none":
            expected.add(401)
        if route.auth == "admin":
            expected.add(403)
        assert codes == expected, (route.method, route.path)
        for code in codes:
            content = op["responses"][str(code)]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
        assert "Retry-After" in op["responses"]["503"]["headers"]
