"""Pages and assets for browsers, all served from this process (no CDN, no external asset).

    GET /client/droptv-live.js   the JavaScript client (ES module; source: clients/js/)
    GET /watch/{creator_id}      the watch page (server/static/watch.html + watch.js/.css)
    GET /docs                    Swagger UI over /openapi.json (vendored swagger-ui-dist)
    GET /static/...              the page's own files and the vendored Swagger UI

Files are read once at start-up, answered with an ETag (If-None-Match gives
304) and `Cache-Control: no-cache`, so a deploy is picked up at the next
load. HTML answers carry a Content-Security-Policy that allows scripts,
styles and images from this origin only (media may come from the CDN): the
browser itself then enforces "no external asset".
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from protocol.errors import NotFound
from server.state import POOL
from store import channels

__all__ = ["CLIENT_JS", "STATIC", "setup"]

ROOT: Final = Path(__file__).resolve().parents[2]
STATIC: Final = Path(__file__).resolve().parents[1] / "static"
CLIENT_JS: Final = ROOT / "clients" / "js" / "droptv-live.js"
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self' ws: wss:; media-src 'self' https: blob:; base-uri 'none';"
    " frame-ancestors 'none'; form-action 'self'"
)
# Swagger UI sets inline styles; its page allows them (scripts stay same-origin only).
DOCS_CSP: Final = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
_TYPES: Final = {".js": "text/javascript", ".html": "text/html", ".css": "text/css"}


class Asset:
    """One file's bytes and ETag, read once."""

    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'
        self.content_type = _TYPES.get(path.suffix, "application/octet-stream")

    def answer(self, request: web.Request, *, csp: str | None = None) -> web.Response:
        headers = {
            "ETag": self.etag,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        if csp:
            headers["Content-Security-Policy"] = csp
            headers["Referrer-Policy"] = "no-referrer"
        if request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=self.body, content_type=self.content_type, charset="utf-8", headers=headers
        )


def _handler(asset: Asset, *, csp: str | None = None) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        return asset.answer(request, csp=csp)

    return serve


def _watch(page: Asset) -> Handler:
    async def watch(request: web.Request) -> web.Response:
        creator_id = request.match_info["creator_id"]
        if await channels.get_creator(request.app[POOL], creator_id) is None:
            raise NotFound("Creator not found", field="creator_id")
        return page.answer(request, csp=CSP)

    return watch


def setup(app: web.Application) -> None:
    """Register the client, the watch page, the docs page and their static files."""
    r = app.router
    r.add_get("/client/droptv-live.js", _handler(Asset(CLIENT_JS)))
    r.add_get("/watch/{creator_id}", _watch(Asset(STATIC / "watch.html")))
    r.add_get("/docs", _handler(Asset(STATIC / "docs.html"), csp=DOCS_CSP))
    for name in ("watch.js", "watch.css", "docs.js"):
        r.add_get(f"/static/{name}", _handler(Asset(STATIC / name)))
    vendor = STATIC / "vendor" / "swagger-ui"
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r.add_get(f"/static/vendor/swagger-ui/{name}", _handler(Asset(vendor / name)))
