"""Viewer counts and peaks of a channel, exact, from PostgreSQL in one round trip.

"Watching now" is the number of the channel's sessions that are not ended,
within their lifetime and seen within `ttl` seconds of PostgreSQL's `now()`
(the clock every instance shares); see store.sessions for how liveness moves.

Peaks are recorded as a side effect of counting: `peak_today` (the UTC
calendar day) and `peak_all_time` are raised with greatest() and never
lowered, so late or concurrent samples cannot undo a higher peak. The upsert
runs only when the count beats the stored peak, so steady reads take no row
locks. A peak reflects counts that were observed (by any read of this
function, including the websocket layer's periodic ones), not every instant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import asyncpg
import msgspec

from protocol.values import DEVICE_TYPES
from store.errors import edge

__all__ = ["ViewerCounts", "viewer_counts"]


class ViewerCounts(msgspec.Struct, kw_only=True, frozen=True):
    """A consistent snapshot: `by_device` has all six device keys and sums to `watching_now`."""

    watching_now: int
    by_device: dict[str, int]
    peak_today: int
    peak_all_time: int
    measured_at: datetime | None = None  # PostgreSQL's now() of the snapshot


_COUNTS_SQL: Final = """
with live as (
    select device_type, count(*)::int as n
    from watch_sessions
    where channel_id = $1 and ended_at is null and expires_at > now()
      and last_seen_at > now() - make_interval(secs => $2)
    group by device_type
),
total as (select coalesce(sum(n), 0)::int as n from live),
today as (select (now() at time zone 'UTC')::date as day),
old_daily as (
    select peak from channel_peaks_daily where channel_id = $1 and day = (select day from today)
),
old_all as (select peak from channel_peaks_all_time where channel_id = $1),
up_daily as (
    insert into channel_peaks_daily as p (channel_id, day, peak)
    select $1, (select day from today), n from total
    where n > coalesce((select peak from old_daily), -1)
    on conflict (channel_id, day) do update set peak = excluded.peak, peak_at = now()
        where p.peak < excluded.peak
    returning peak
),
up_all as (
    insert into channel_peaks_all_time as p (channel_id, peak)
    select $1, n from total
    where n > coalesce((select peak from old_all), -1)
    on conflict (channel_id) do update set peak = excluded.peak, peak_at = now()
        where p.peak < excluded.peak
    returning peak
)
select
    (select n from total) as watching_now,
    coalesce((select jsonb_object_agg(device_type, n) from live), '{}'::jsonb) as by_device,
    greatest((select n from total), coalesce((select peak from old_daily), 0),
             coalesce((select peak from up_daily), 0)) as peak_today,
    greatest((select n from total), coalesce((select peak from old_all), 0),
             coalesce((select peak from up_all), 0)) as peak_all_time,
    now() as measured_at
"""


@edge
async def viewer_counts(pool: asyncpg.Pool, channel_id: str, *, ttl: float) -> ViewerCounts:
    """Count the channel's watchers now and record peaks; one statement, one round trip.

    The channel must exist (the peak rows reference it). A concurrent higher
    peak written after this statement's snapshot is not reflected in the
    returned peaks, but it is never overwritten by a lower one.
    """
    record = await pool.fetchrow(_COUNTS_SQL, channel_id, ttl)
    assert record is not None
    found: dict[str, int] = record["by_device"]
    by_device = {device: int(found.get(device, 0)) for device in DEVICE_TYPES}
    for device, n in found.items():  # a device type outside the enum still counts
        by_device.setdefault(device, int(n))
    return ViewerCounts(
        watching_now=record["watching_now"],
        by_device=by_device,
        peak_today=record["peak_today"],
        peak_all_time=record["peak_all_time"],
        measured_at=record["measured_at"],
    )
