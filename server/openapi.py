"""`GET /openapi.json`: OpenAPI 3.1 generated from the msgspec types, never written by hand.

`ROUTES` (server/openapi_routes.py) is the table of documented endpoints: one
`Route` per endpoint naming its body, query and response Structs. Schemas come from
`msgspec.json.schema_components`; query Structs become `in: query` parameters
field by field, path templates become `in: path` parameters, and responses
are wrapped in the success envelope. Error answers use the error envelope
(`protocol.errors.ErrorEnvelope`): a route's own refusals plus every status its
shape implies (`error_codes`), which tests/test_fuzz_openapi.py holds the
running server to. Every Struct name in protocol/ is unique, so no two schemas
share a title (tests/test_openapi.py). The document is built once per process
and served as the same bytes.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

import msgspec
from aiohttp import web

from protocol.errors import ErrorEnvelope
from server.openapi_routes import ROUTES, Route

REF: Final = "#/components/schemas/{name}"
TITLE: Final = "droptv-live"
VERSION: Final = "1.0.0"


_REASONS: Final = {
    400: "Malformed, missing or too deeply nested JSON body, or a Content-Type other than JSON",
    401: "Missing, invalid or expired bearer token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Body too large",
    422: "Invalid field (named in `field`)",
    429: "Too many concurrent sessions",
    503: "Temporarily unavailable, retry after Retry-After seconds",
}
_RETRY_AFTER: Final = {
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 0}}
}


# What any endpoint of a given shape can answer, whatever its handler does:
# a JSON body can be malformed, missing, of the wrong Content-Type or nested too
# deeply (400), over max_body (413) or off its type (422); query parameters are
# coerced and checked (422); a path id may not exist (404); a bad token is 401
# wherever one is read, a non-admin token 403 on admin endpoints; and any
# endpoint answers 503 + Retry-After while PostgreSQL or Redis is out of reach.
_BODY_ERRORS: Final = (400, 413, 422)
_QUERY_ERRORS: Final = (422,)
_PATH_ERRORS: Final = (404,)
_AUTH_ERRORS: Final = {"none": (), "optional": (401,), "required": (401,), "admin": (401, 403)}
_OUTAGE: Final = 503


def error_codes(route: Route) -> list[int]:
    """Every error status `route` can answer: its own `errors` and those implied by its shape."""
    codes = {*route.errors, *_AUTH_ERRORS[route.auth], _OUTAGE}
    if route.body is not None:
        codes.update(_BODY_ERRORS)
    if route.query is not None:
        codes.update(_QUERY_ERRORS)
    if "{" in route.path:
        codes.update(_PATH_ERRORS)
    return sorted(codes)


def _envelope(data_schema: dict[str, Any], message: bool) -> dict[str, Any]:
    props: dict[str, Any] = {"status": {"const": "success"}}
    if message:
        props["message"] = {"type": "string"}
    props["data"] = data_schema
    return {"type": "object", "properties": props, "required": list(props)}


def _operation_id(route: Route) -> str:
    return f"{route.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', route.path.lower()).strip('_')}"


def _parameters(route: Route, components: dict[str, Any], query_ref: Any) -> list[dict[str, Any]]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    if route.query is not None:
        schema = components[query_ref["$ref"].rsplit("/", 1)[1]]
        required = set(schema.get("required", ()))
        params += [
            {"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema["properties"].items()
        ]
    return params


def build_document(routes: list[Route] | None = None) -> dict[str, Any]:
    """The OpenAPI document for `routes` (default: ROUTES)."""
    routes = ROUTES if routes is None else routes
    types: list[Any] = [ErrorEnvelope]
    for r in routes:
        types += [t for t in (r.response, r.body, r.query) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    ref = dict(zip(map(id, types), schemas, strict=True))
    error_ref = ref[id(ErrorEnvelope)]
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "tags": [r.tag],
            "operationId": _operation_id(r),
        }
        params = _parameters(r, components, ref.get(id(r.query)))
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref[id(r.body)]}},
            }
        ok_schema = _envelope(ref[id(r.response)], r.message) if r.response is not None else {}
        op["responses"] = {
            str(r.status): {
                "description": "Success",
                "content": {"application/json": {"schema": ok_schema}},
            }
        }
        for code in error_codes(r):
            op["responses"][str(code)] = {
                "description": _REASONS.get(code, "Error"),
                "content": {"application/json": {"schema": error_ref}},
            }
            if code == _OUTAGE:
                op["responses"][str(code)]["headers"] = _RETRY_AFTER
        if r.auth in ("required", "admin"):
            op["security"] = [{"bearer": []}]
        elif r.auth == "optional":
            op["security"] = [{}, {"bearer": []}]
        else:
            op["security"] = []  # public: no bearer needed (lint: explicit, not inherited)
        if r.auth == "admin":
            op["description"] = "Admin token, or the creator's own token for their own data."
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "servers": [{"url": "/", "description": "the instance serving this document"}],
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Live channel REST API (endpoints 28–37), admin API and live "
            "analytics (51–54). Schemas generated from msgspec types.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """The encoded document of ROUTES; the table is fixed at import, so built once per process."""
    return msgspec.json.encode(build_document())


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


def setup(app: web.Application) -> None:
    """Register GET /openapi.json."""
    app.router.add_get("/openapi.json", openapi_json)
