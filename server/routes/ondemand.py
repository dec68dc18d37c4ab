"""Endpoint 37: a creator's on-demand content, locked per the caller's entitlements.

Public; a bearer token (optional) unlocks what the caller is entitled to (see
store.content). Locked items have `stream_url` null. `page` ≥ 1 and
1 ≤ `limit` ≤ 100 (422 naming the field otherwise); a page past the end is an
empty `content` list with the real `total`. Unknown creator: 404.
"""

from __future__ import annotations

from aiohttp import web

from protocol import urls
from protocol.errors import NotFound
from protocol.format import clock_duration, compact_count
from protocol.rest import ContentItem, OnDemandPage, OnDemandQuery
from protocol.values import ContentFilter, ContentType
from server.auth import optional_caller
from server.respond import ok, query_as
from server.routes.live import BASE, pool_of, settings_of
from store import channels, content
from store.content import ContentRow


def _item(row: ContentRow, cdn: str) -> ContentItem:
    is_ppv = row.type == ContentType.PPV
    return ContentItem(
        content_id=row.content_id,
        type=ContentType(row.type),
        title=row.title,
        thumbnail_url=row.thumbnail_url
        or urls.content_thumbnail_url(cdn, row.type, row.content_id),
        duration_seconds=row.duration_seconds,
        duration_formatted=clock_duration(row.duration_seconds),
        season=row.season,
        episode_number=row.episode_number,
        is_free=row.type == ContentType.FREE,
        is_locked=not row.unlocked,
        views=row.views,
        views_formatted=compact_count(row.views),
        price=row.price if is_ppv else None,
        currency=row.currency if is_ppv else None,
        stream_url=urls.content_stream_url(cdn, row.type, row.content_id) if row.unlocked else None,
    )


async def ondemand(request: web.Request) -> web.Response:
    """37: one page of content with filters type, season, page, limit."""
    settings = settings_of(request)
    caller = optional_caller(request, settings.jwt_secret)
    query = query_as(request, OnDemandQuery)
    creator_id = request.match_info["creator_id"]
    pool = pool_of(request)
    if await channels.get_creator(pool, creator_id) is None:
        raise NotFound("Creator not found", field="creator_id")
    found = await content.list_content(
        pool,
        creator_id,
        content_type=None if query.type == ContentFilter.ALL else query.type.value,
        season=query.season,
        page=query.page,
        limit=query.limit,
        user_id=caller.user_id if caller else None,
        sees_all=caller is not None and (caller.is_admin or caller.user_id == creator_id),
    )
    return ok(
        OnDemandPage(
            creator_id=creator_id,
            total=found.total,
            page=query.page,
            limit=query.limit,
            content=[_item(row, settings.cdn_base_url) for row in found.items],
        )
    )


def setup(app: web.Application) -> None:
    """Register endpoint 37."""
    app.router.add_get(f"{BASE}/ondemand", ondemand)
