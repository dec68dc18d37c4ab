"""The electronic programme guide at an instant: what is on, what is next, when that changes.

Pure functions of a schedule and `now` (an aware datetime, passed in, never read
here). Programs need not be sorted; every result is independent of input order.
A program occupies the half-open interval [starts_at, ends_at): at its end
instant it is over and the next one is on.

The wire views of the guide live here too: `EpgNow` (built by `epg_now`) and
`WatchEpg` (`watch_epg`), the `epg` objects of endpoints 36 and 33 and of the
websocket `hello` and `epg` messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Final

import msgspec
from msgspec.structs import force_setattr

from protocol.format import clock_time, local_date, require_aware, utc_seconds, zone

__all__ = [
    "EpgCurrent",
    "EpgNext",
    "EpgNow",
    "InvalidProgram",
    "Program",
    "ScheduleEntry",
    "WatchEpg",
    "current_program",
    "day_schedule",
    "elapsed_minutes",
    "epg_current",
    "epg_next",
    "epg_now",
    "local_day_bounds",
    "next_boundary",
    "next_program",
    "progress_percent",
    "remaining_minutes",
    "schedule_entry",
    "starts_in_minutes",
    "watch_epg",
]

MINUTE: Final = timedelta(minutes=1)
ONE_DAY: Final = timedelta(days=1)


class InvalidProgram(ValueError):
    """A program whose times cannot be placed on a timeline; `field` names the bad one."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field: Final = field


class Program(msgspec.Struct, kw_only=True, frozen=True):
    """One scheduled program; `starts_at` and `ends_at` are stored in UTC, end after start.

    Times are normalized to UTC on construction because datetimes sharing one
    zone compare and subtract by wall clock, which is wrong across a DST change.
    Raises `InvalidProgram` for a naive time or an empty or inverted interval.
    """

    program_id: str
    title: str
    starts_at: datetime
    ends_at: datetime
    description: str | None = None
    thumbnail_url: str | None = None

    def __post_init__(self) -> None:
        for field in ("starts_at", "ends_at"):
            value: datetime = getattr(self, field)
            if value.tzinfo is None or value.utcoffset() is None:
                raise InvalidProgram(field, "must be timezone-aware")
            force_setattr(self, field, value.astimezone(UTC))
        if self.ends_at <= self.starts_at:
            raise InvalidProgram("ends_at", "must be after starts_at")

    @property
    def duration(self) -> timedelta:
        """Always positive: construction refuses an empty or inverted interval."""
        return self.ends_at - self.starts_at


def _order(p: Program) -> tuple[datetime, datetime, str]:
    return (p.starts_at, p.ends_at, p.program_id)


def _on_air_at(p: Program, at: datetime) -> datetime:
    """`at` clamped into the program, so the minute counts stay within its length."""
    return min(max(at, p.starts_at), p.ends_at)


def current_program(programs: Sequence[Program], now: datetime) -> Program | None:
    """The program on air at `now` (starts_at <= now < ends_at), or None in a gap.

    If bad data makes programs overlap, the one that began last wins.
    """
    at = require_aware(now, "now")
    on_air = [p for p in programs if p.starts_at <= at < p.ends_at]
    return max(on_air, key=_order, default=None)


def next_program(programs: Sequence[Program], now: datetime) -> Program | None:
    """The first program starting at or after the current one's end, else after `now`.

    Programs overlapping the current one are skipped: they are not "next", they
    were cut. Returns None when nothing is scheduled later.
    """
    at = require_aware(now, "now")
    current = current_program(programs, at)
    after = current.ends_at if current is not None else at
    upcoming = [p for p in programs if p.starts_at >= after]
    return min(upcoming, key=_order, default=None)


def elapsed_minutes(p: Program, now: datetime) -> int:
    """Whole minutes since the start, rounded down; 0 before it, the full length after it.

    Rounding rule: elapsed rounds down and `remaining_minutes` rounds up, so for a
    program of whole minutes the two always add up to its length.
    """
    return (_on_air_at(p, require_aware(now, "now")) - p.starts_at) // MINUTE


def remaining_minutes(p: Program, now: datetime) -> int:
    """Minutes until the end, rounded up (a program with 10 s left has 1 minute left).

    0 at or after the end, the full length before the start. Rounding up is the
    complement of `elapsed_minutes` rounding down, so the two sum to the length.
    """
    return -((_on_air_at(p, require_aware(now, "now")) - p.ends_at) // MINUTE)


def progress_percent(p: Program, now: datetime) -> int:
    """Share of the program already played, 0..100, rounded down (100 only at the end)."""
    played = _on_air_at(p, require_aware(now, "now")) - p.starts_at
    return played * 100 // p.duration


def starts_in_minutes(p: Program, now: datetime) -> int:
    """Minutes until the start, rounded up so a started program is never "in 0" early; >= 0.

    Rounding up matches `remaining_minutes`: the next program starts in as many
    minutes as the current one has left when they are back to back.
    """
    until = p.starts_at - require_aware(now, "now")
    return max(0, -(-until // MINUTE))


def next_boundary(programs: Sequence[Program], now: datetime) -> datetime | None:
    """The earliest start or end strictly after `now`: when current or next can change.

    A timer sleeping until this instant never misses a change; None means the
    guide is static from `now` on.
    """
    at = require_aware(now, "now")
    edges = (t for p in programs for t in (p.starts_at, p.ends_at) if t > at)
    return min(edges, default=None)


def local_day_bounds(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """UTC [start, end) of the local calendar day containing `now` in zone `tz`.

    Midnight to midnight in local time, so the day lasts 23 or 25 hours across a
    DST change. Where a zone skips midnight the day starts at the first instant
    that exists; where midnight repeats, at its first occurrence.
    Raises `UnknownTimezone` for a bad `tz`.
    """
    local_zone = zone(tz)
    day = require_aware(now, "now").astimezone(local_zone).date()
    start = datetime.combine(day, time(), tzinfo=local_zone)
    end = datetime.combine(day + ONE_DAY, time(), tzinfo=local_zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def day_schedule(programs: Sequence[Program], now: datetime, tz: str) -> list[Program]:
    """Programs overlapping the local day of `now` in `tz`, sorted by start.

    A program crossing midnight belongs to both days it touches; one ending
    exactly at the day's start does not. Raises `UnknownTimezone` for a bad `tz`.
    """
    start, end = local_day_bounds(now, tz)
    return sorted((p for p in programs if p.starts_at < end and p.ends_at > start), key=_order)


# --- wire views: the epg objects of endpoints 33 and 36 and of the websocket --------------
#
# `EpgNow` (current + next program) is endpoint 36's `epg` object, the websocket `hello`'s
# `epg` and the payload of the `epg` message; `WatchEpg` adds endpoint 33's local day.


class EpgCurrent(msgspec.Struct, kw_only=True, frozen=True):
    """The program on air, with the minute arithmetic above (elapsed + remaining = length)."""

    program_id: str
    title: str
    elapsed_minutes: int
    remaining_minutes: int
    progress_percent: int


class EpgNext(msgspec.Struct, kw_only=True, frozen=True):
    program_id: str
    title: str
    starts_in_minutes: int
    start_time_formatted: str


class ScheduleEntry(msgspec.Struct, kw_only=True, frozen=True):
    """One program of the local day; times formatted in the watcher's zone."""

    program_id: str
    title: str
    description: str | None
    starts_at: datetime
    ends_at: datetime
    start_time_formatted: str
    end_time_formatted: str
    duration_minutes: int
    is_current: bool


class WatchEpg(msgspec.Struct, kw_only=True, frozen=True):
    """The local day (`date` in `timezone`): what is on, what is next, and the day's schedule."""

    date: str
    timezone: str
    current_program: EpgCurrent | None
    next_program: EpgNext | None
    schedule: list[ScheduleEntry]


class EpgNow(msgspec.Struct, kw_only=True, frozen=True):
    """What is on and what comes next (either null in a gap or past the schedule's end)."""

    current_program: EpgCurrent | None
    next_program: EpgNext | None


def epg_current(p: Program, now: datetime) -> EpgCurrent:
    return EpgCurrent(
        program_id=p.program_id,
        title=p.title,
        elapsed_minutes=elapsed_minutes(p, now),
        remaining_minutes=remaining_minutes(p, now),
        progress_percent=progress_percent(p, now),
    )


def epg_next(p: Program, now: datetime, tz: str) -> EpgNext:
    return EpgNext(
        program_id=p.program_id,
        title=p.title,
        starts_in_minutes=starts_in_minutes(p, now),
        start_time_formatted=clock_time(p.starts_at, tz),
    )


def epg_now(programs: Sequence[Program], now: datetime, tz: str) -> EpgNow:
    """What is on at `now` and what comes next, start time shown in zone `tz`.

    Either side is None in a gap or at the end of the schedule. Raises
    `UnknownTimezone` (422, field timezone) for a bad `tz`.
    """
    current = current_program(programs, now)
    upcoming = next_program(programs, now)
    return EpgNow(
        current_program=epg_current(current, now) if current else None,
        next_program=epg_next(upcoming, now, tz) if upcoming else None,
    )


def schedule_entry(p: Program, now: datetime, tz: str) -> ScheduleEntry:
    at = require_aware(now, "now")
    return ScheduleEntry(
        program_id=p.program_id,
        title=p.title,
        description=p.description,
        starts_at=utc_seconds(p.starts_at),
        ends_at=utc_seconds(p.ends_at),
        start_time_formatted=clock_time(p.starts_at, tz),
        end_time_formatted=clock_time(p.ends_at, tz),
        duration_minutes=p.duration // MINUTE,
        is_current=p.starts_at <= at < p.ends_at,
    )


def watch_epg(programs: Sequence[Program], now: datetime, tz: str) -> WatchEpg:
    """The `epg` object of 33: the local day of `now` in `tz`, current and next program.

    Raises `UnknownTimezone` (422, field timezone) for a bad `tz`.
    """
    day = day_schedule(programs, now, tz)
    head = epg_now(programs, now, tz)
    return WatchEpg(
        date=local_date(now, tz),
        timezone=tz,
        current_program=head.current_program,
        next_program=head.next_program,
        schedule=[schedule_entry(p, now, tz) for p in day],
    )
