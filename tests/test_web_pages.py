"""Browser-facing routes: the JS client, the watch page, the docs page and /asyncapi.json.

Served from this process only: every script, style and image a page loads is
same-origin, and the Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

import json
import re
from typing import Any, get_args

import asyncpg
import pytest

from protocol.messages import ClientMessage, ServerMessage
from server.asyncapi import document_bytes
from server.routes.web import CLIENT_JS
from tests.conftest import ROOT, AppClientFactory


async def test_the_js_client_is_served_as_an_es_module(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client()
    resp = await client.get("/client/droptv-live.js")
    assert resp.status == 200 and resp.content_type == "text/javascript"
    body = await resp.read()
    assert body == CLIENT_JS.read_bytes()
    assert b"export class LiveClient" in body and b"export function hlsStreamAuth" in body
    again = await client.get(
        "/client/droptv-live.js", headers={"If-None-Match": resp.headers["ETag"]}
    )
    assert again.status == 304


async def test_the_watch_page_uses_only_its_own_assets(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client()
    resp = await client.get("/watch/creator_001")
    assert resp.status == 200 and resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    html = await resp.text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs, html
    for ref in refs:
        assert ref.startswith(("/", "data:")), ref  # no CDN, no external asset
        if ref.startswith(("/static/", "/client/")):
            assert (await client.get(ref)).status == 200, ref
    script = await (await client.get("/static/watch.js")).text()
    assert 'from "/client/droptv-live.js"' in script
    assert "http://" not in script and "https://" not in script
    assert (await client.get("/watch/creator_nope")).status == 404


async def test_docs_render_the_openapi_document_locally(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client()
    resp = await client.get("/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith(("/", "data:")), ref
    bundle = await client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status == 200 and len(await bundle.read()) > 500_000
    assert '"/openapi.json"' in await (await client.get("/static/docs.js")).text()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_asyncapi_document_lists_every_message_type(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client()
    resp = await client.get("/asyncapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    doc = await resp.json()
    assert doc["asyncapi"] == "3.0.0"
    channel = doc["channels"]["live"]
    assert channel["address"] == "/creators/{creator_id}/channel/live/ws"
    assert set(channel["parameters"]) == {"creator_id"}
    messages = doc["components"]["messages"]
    server_tags = {c.__struct_config__.tag for c in get_args(ServerMessage)}
    client_tags = {c.__struct_config__.tag for c in get_args(ClientMessage)}
    assert {m["name"] for k, m in messages.items() if k.startswith("server")} == server_tags
    assert {m["name"] for k, m in messages.items() if k.startswith("client")} == client_tags
    ops = doc["operations"]
    assert ops["sendServerMessages"]["action"] == "send"
    assert ops["receiveClientMessages"]["action"] == "receive"
    assert len(ops["sendServerMessages"]["messages"]) == len(server_tags)
    refs = _refs(doc)
    assert refs
    for ref in refs:  # every $ref resolves inside the document
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
    hello = doc["components"]["schemas"]["Hello"]
    assert {"epoch", "seq", "ts", "session", "viewers", "epg", "token"} <= set(hello["properties"])
    assert "4009" in doc["info"]["description"]


async def test_openapi_lint_servers_and_public_security(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    """The findings of issue 11's lint run: no `servers`, public GETs without `security: []`."""
    client = await make_client()
    doc = await (await client.get("/openapi.json")).json()
    assert doc["servers"] == [{"url": "/", "description": "the instance serving this document"}]
    viewers = doc["paths"]["/creators/{creator_id}/channel/live/viewers"]["get"]
    assert viewers["security"] == []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "security" in op, (method, path)
    ingest = doc["paths"]["/admin/channels/{channel_id}/ingest"]["get"]
    assert ingest["security"] == [{"bearer": []}]
    schema = ingest["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["properties"]["data"] == {"$ref": "#/components/schemas/IngestInfo"}


ASYNCAPI_SCHEMA = ROOT / "tests" / "browser" / "node_modules" / "@asyncapi" / "specs" / "schemas"


@pytest.mark.skipif(
    not (ASYNCAPI_SCHEMA / "3.0.0.json").exists(),
    reason="needs @asyncapi/specs: `npm ci` in tests/browser (make test does it)",
)
def test_asyncapi_document_validates_against_the_official_schema() -> None:
    """The AsyncAPI 3.0.0 JSON schema from the @asyncapi/specs npm package, pinned by
    tests/browser/package-lock.json; the validator must also catch a broken document."""
    import jsonschema

    schema = json.loads((ASYNCAPI_SCHEMA / "3.0.0.json").read_text())
    doc = json.loads(document_bytes())
    validator = jsonschema.Draft7Validator(schema)
    assert [e.message for e in validator.iter_errors(doc)] == []
    doc["operations"]["sendServerMessages"]["action"] = "publish"  # AsyncAPI 2 wording
    assert list(validator.iter_errors(doc))
