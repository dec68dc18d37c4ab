"""Viewer counts of a channel: watching now from presence, peaks from PostgreSQL.

A read costs one presence call (O(instances + devices), store.presence) and
one PostgreSQL statement on two primary keys, whatever the audience.

Peaks are recorded as a side effect of reading: `peak_today` (the UTC
calendar day) and `peak_all_time` are raised with greatest() and never
lowered, so late or concurrent samples cannot undo a higher peak. The upsert
writes only when the count beats the stored peak, so steady reads take no
row locks. A peak reflects counts that were observed (by any read, including
the lease holder's every `viewer_interval`), not every instant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import asyncpg
import msgspec

from store.errors import edge
from store.presence import Presence

__all__ = ["ViewerCounts", "record_peaks", "viewer_counts"]


class ViewerCounts(msgspec.Struct, kw_only=True, frozen=True):
    """One reading: `by_device` has all six device keys and sums to `watching_now`."""

    watching_now: int
    by_device: dict[str, int]
    peak_today: int
    peak_all_time: int
    measured_at: datetime | None = None  # PostgreSQL's now() when the peaks were read


_PEAKS_SQL: Final = """
with today as (select (now() at time zone 'UTC')::date as day),
old_daily as (
    select peak from channel_peaks_daily where channel_id = $1 and day = (select day from today)
),
old_all as (select peak from channel_peaks_all_time where channel_id = $1),
up_daily as (
    insert into channel_peaks_daily as p (channel_id, day, peak)
    select $1, (select day from today), $2
    where $2 > coalesce((select peak from old_daily), -1)
    on conflict (channel_id, day) do update set peak = excluded.peak, peak_at = now()
        where p.peak < excluded.peak
    returning peak
),
up_all as (
    insert into channel_peaks_all_time as p (channel_id, peak)
    select $1, $2
    where $2 > coalesce((select peak from old_all), -1)
    on conflict (channel_id) do update set peak = excluded.peak, peak_at = now()
        where p.peak < excluded.peak
    returning peak
)
select
    greatest($2, coalesce((select peak from old_daily), 0),
             coalesce((select peak from up_daily), 0)) as peak_today,
    greatest($2, coalesce((select peak from old_all), 0),
             coalesce((select peak from up_all), 0)) as peak_all_time,
    now() as measured_at
"""


@edge
async def record_peaks(
    pool: asyncpg.Pool, channel_id: str, watching_now: int
) -> tuple[int, int, datetime]:
    """Raise the stored peaks to `watching_now` if it beats them; (today, all time, now).

    The channel must exist (the peak rows reference it). A concurrent higher
    peak written after this statement's snapshot is not reflected in the
    returned peaks, but it is never overwritten by a lower one.
    """
    record = await pool.fetchrow(_PEAKS_SQL, channel_id, watching_now)
    assert record is not None
    return int(record["peak_today"]), int(record["peak_all_time"]), record["measured_at"]


async def viewer_counts(
    presence: Presence, pool: asyncpg.Pool, channel_id: str, *, ttl: float
) -> ViewerCounts:
    """Watching now (presence) and the peaks it may raise (PostgreSQL): two O(1) round trips."""
    now = await presence.counts(channel_id, ttl=ttl)
    peak_today, peak_all_time, measured_at = await record_peaks(pool, channel_id, now.total)
    return ViewerCounts(
        watching_now=now.total,
        by_device=now.by_device,
        peak_today=peak_today,
        peak_all_time=peak_all_time,
        measured_at=measured_at,
    )
