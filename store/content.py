"""On-demand content of a creator, with the caller's entitlements decided in the same query.

Locking rule (endpoint 37): free items are open to everyone, signed in or not;
premium items to users with an active subscription to the creator; PPV items
to users who bought that item. The creator (user id == creator_id) and admins
see everything unlocked. Ordering is stable for paging: season and episode
first (items without a season last), then publication time, then id.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import asyncpg
import msgspec

from store.channel_writes import write_one
from store.errors import edge

__all__ = [
    "ContentPage",
    "ContentRow",
    "create_content",
    "delete_content",
    "get_content",
    "list_content",
    "update_content",
]

CONTENT_COLUMNS: Final = (
    "content_id",
    "creator_id",
    "type",
    "title",
    "thumbnail_url",
    "duration_seconds",
    "season",
    "episode_number",
    "views",
    "price",
    "currency",
    "published_at",
)


class ContentRow(msgspec.Struct, kw_only=True, frozen=True):
    content_id: str
    creator_id: str
    type: str
    title: str
    thumbnail_url: str | None
    duration_seconds: int
    season: int | None
    episode_number: int | None
    views: int
    price: float | None
    currency: str | None
    published_at: datetime
    unlocked: bool = False  # for the caller of list_content


class ContentPage(msgspec.Struct, kw_only=True, frozen=True):
    total: int
    items: list[ContentRow]


def _row(record: Mapping[str, Any]) -> ContentRow:
    values = dict(record)
    price = values.get("price")
    if isinstance(price, Decimal):
        values["price"] = float(price)
    values.pop("total", None)
    return ContentRow(**values)


_LIST_SQL: Final = f"""
select count(*) over () as total, {", ".join("c." + col for col in CONTENT_COLUMNS)},
    (c.type = 'free' or $6
     or (c.type = 'premium' and exists(
            select 1 from subscriptions s where s.user_id = $5 and s.creator_id = c.creator_id
            and (s.expires_at is null or s.expires_at > now())))
     or (c.type = 'ppv' and exists(
            select 1 from ppv_purchases p where p.user_id = $5 and p.content_id = c.content_id))
    ) as unlocked
from content c
where c.creator_id = $1 and ($2::text is null or c.type = $2) and ($3::int is null or c.season = $3)
order by c.season nulls last, c.episode_number nulls last, c.published_at, c.content_id
limit $4 offset $7
"""


@edge
async def list_content(
    pool: asyncpg.Pool,
    creator_id: str,
    *,
    content_type: str | None,
    season: int | None,
    page: int,
    limit: int,
    user_id: str | None,
    sees_all: bool,
) -> ContentPage:
    """One page (1-based) and the total matching count; `sees_all` unlocks everything."""
    offset = (page - 1) * limit
    records = await pool.fetch(
        _LIST_SQL, creator_id, content_type, season, limit, user_id, sees_all, offset
    )
    if records:
        return ContentPage(total=int(records[0]["total"]), items=[_row(r) for r in records])
    total = await pool.fetchval(
        "select count(*) from content where creator_id = $1 and ($2::text is null or type = $2)"
        " and ($3::int is null or season = $3)",
        creator_id,
        content_type,
        season,
    )
    return ContentPage(total=int(total), items=[])


@edge
async def get_content(pool: asyncpg.Pool, content_id: str) -> ContentRow | None:
    record = await pool.fetchrow(
        f"select {', '.join(CONTENT_COLUMNS)} from content where content_id = $1", content_id
    )
    return _row(record) if record else None


def _price(values: dict[str, Any]) -> dict[str, Any]:
    if values.get("price") is not None:
        values["price"] = Decimal(str(values["price"]))
    return values


@edge
async def create_content(pool: asyncpg.Pool, values: Mapping[str, Any]) -> ContentRow:
    """Insert one item; `values` holds CONTENT_COLUMNS (published_at optional: now)."""
    data = _price({k: v for k, v in values.items() if v is not None})
    names = list(data)
    record = await write_one(
        pool,
        f"insert into content ({', '.join(names)})"
        f" values ({', '.join(f'${i}' for i in range(1, len(names) + 1))})"
        f" returning {', '.join(CONTENT_COLUMNS)}",
        *(data[n] for n in names),
        key="content_id",
        refs={"creator_id": "creator_id"},
    )
    assert record is not None
    return _row(record)


@edge
async def update_content(
    pool: asyncpg.Pool, content_id: str, changes: Mapping[str, Any]
) -> ContentRow | None:
    if not changes:
        return await get_content(pool, content_id)
    data = _price(dict(changes))
    names = list(data)
    record = await write_one(
        pool,
        f"update content set {', '.join(f'{n} = ${i}' for i, n in enumerate(names, 2))}"
        f" where content_id = $1 returning {', '.join(CONTENT_COLUMNS)}",
        content_id,
        *(data[n] for n in names),
        key="content_id",
    )
    return _row(record) if record else None


@edge
async def delete_content(pool: asyncpg.Pool, content_id: str) -> bool:
    return bool(
        await pool.fetchval("delete from content where content_id = $1 returning true", content_id)
    )
