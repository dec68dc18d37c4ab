"""protocol.epg: current/next, minute counts, boundaries and local days, given `now`.

The schedule is the seed's evening on channel 101, Friday 2024-11-01 in New York
(EDT, UTC-4), with a gap and a program crossing midnight added.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from protocol.epg import (
    InvalidProgram,
    Program,
    current_program,
    day_schedule,
    elapsed_minutes,
    local_day_bounds,
    next_boundary,
    next_program,
    progress_percent,
    remaining_minutes,
    starts_in_minutes,
)
from protocol.format import UnknownTimezone, clock_time

NY = "America/New_York"


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def prog(program_id: str, starts_at: datetime, ends_at: datetime) -> Program:
    return Program(program_id=program_id, title=program_id, starts_at=starts_at, ends_at=ends_at)


# Local times in the comments; UTC in the values.
P1 = prog("prog_001", utc(2024, 11, 1, 21, 0), utc(2024, 11, 1, 22, 15))  # 17:00-18:15
P2 = Program(  # 18:15-19:00
    program_id="prog_002",
    title="Behind the Laughs",
    starts_at=utc(2024, 11, 1, 22, 15),
    ends_at=utc(2024, 11, 1, 23, 0),
)
P3 = Program(  # 19:00-20:00
    program_id="prog_003",
    title="Chris Spencer Presents",
    starts_at=utc(2024, 11, 1, 23, 0),
    ends_at=utc(2024, 11, 2, 0, 0),
)
P4 = prog("prog_004", utc(2024, 11, 2, 0, 30), utc(2024, 11, 2, 3, 30))  # 20:30-23:30, after a gap
P5 = prog("prog_005", utc(2024, 11, 2, 3, 30), utc(2024, 11, 2, 4, 30))  # 23:30-00:30
SCHEDULE = [P1, P2, P3, P4, P5]
SHUFFLED = [P4, P1, P5, P3, P2]

SEED_NOW = utc(2024, 11, 1, 22, 31)  # 18:31 in New York


@pytest.mark.parametrize("programs", [SCHEDULE, SHUFFLED, SCHEDULE[::-1]])
def test_seed_heartbeat(programs: list[Program]) -> None:
    current = current_program(programs, SEED_NOW)
    assert current is P2
    assert elapsed_minutes(current, SEED_NOW) == 16
    assert remaining_minutes(current, SEED_NOW) == 29
    assert progress_percent(current, SEED_NOW) == 35
    upcoming = next_program(programs, SEED_NOW)
    assert upcoming is P3
    assert starts_in_minutes(upcoming, SEED_NOW) == 29
    assert upcoming.starts_at == utc(2024, 11, 1, 23, 0)
    assert clock_time(upcoming.starts_at, NY) == "7:00 PM"
    assert next_boundary(programs, SEED_NOW) == utc(2024, 11, 1, 23, 0)


def test_now_exactly_on_a_boundary() -> None:
    at = utc(2024, 11, 1, 23, 0)
    assert current_program(SHUFFLED, at) is P3
    assert next_program(SHUFFLED, at) is P4
    assert (elapsed_minutes(P2, at), remaining_minutes(P2, at), progress_percent(P2, at)) == (
        45,
        0,
        100,
    )
    assert (elapsed_minutes(P3, at), remaining_minutes(P3, at), progress_percent(P3, at)) == (
        0,
        60,
        0,
    )
    assert starts_in_minutes(P3, at) == 0
    # Strictly after: a timer woken at a boundary must not get the same instant back.
    assert next_boundary(SHUFFLED, at) == utc(2024, 11, 2, 0, 0)


def test_gap_between_programs() -> None:
    at = utc(2024, 11, 2, 0, 10)  # 20:10, between prog_003 and prog_004
    assert current_program(SHUFFLED, at) is None
    assert next_program(SHUFFLED, at) is P4
    assert starts_in_minutes(P4, at) == 20
    assert next_boundary(SHUFFLED, at) == P4.starts_at


def test_next_after_current_skips_the_gap() -> None:
    at = utc(2024, 11, 1, 23, 59)
    assert current_program(SHUFFLED, at) is P3
    assert next_program(SHUFFLED, at) is P4
    assert starts_in_minutes(P4, at) == 31


def test_before_and_after_the_schedule() -> None:
    before = utc(2024, 11, 1, 12, 0)
    assert current_program(SHUFFLED, before) is None
    assert next_program(SHUFFLED, before) is P1
    assert next_boundary(SHUFFLED, before) == P1.starts_at
    after = utc(2024, 11, 2, 4, 30)
    assert current_program(SHUFFLED, after) is None
    assert next_program(SHUFFLED, after) is None
    assert next_boundary(SHUFFLED, after) is None


def test_empty_schedule() -> None:
    assert current_program([], SEED_NOW) is None
    assert next_program([], SEED_NOW) is None
    assert next_boundary([], SEED_NOW) is None
    assert day_schedule([], SEED_NOW, NY) == []


def test_minute_counts_add_up_every_second() -> None:
    for second in range(45 * 60 + 1):
        at = P2.starts_at + timedelta(seconds=second)
        elapsed, remaining = elapsed_minutes(P2, at), remaining_minutes(P2, at)
        assert elapsed == second // 60
        assert elapsed + remaining == 45
        assert progress_percent(P2, at) == second * 100 // (45 * 60)


def test_rounding_between_whole_minutes() -> None:
    at = SEED_NOW + timedelta(seconds=30)  # 18:31:30
    assert elapsed_minutes(P2, at) == 16
    assert remaining_minutes(P2, at) == 29  # 28.5 rounds up
    assert starts_in_minutes(P3, at) == 29  # matches remaining when back to back
    assert remaining_minutes(P2, P2.ends_at - timedelta(seconds=1)) == 1
    assert starts_in_minutes(P3, P3.starts_at - timedelta(seconds=1)) == 1


def test_counts_clamp_outside_the_program() -> None:
    early = P2.starts_at - timedelta(hours=1)
    assert (elapsed_minutes(P2, early), remaining_minutes(P2, early)) == (0, 45)
    assert progress_percent(P2, early) == 0
    assert starts_in_minutes(P2, early) == 60
    late = P2.ends_at + timedelta(hours=1)
    assert (elapsed_minutes(P2, late), remaining_minutes(P2, late)) == (45, 0)
    assert progress_percent(P2, late) == 100
    assert starts_in_minutes(P2, late) == 0


def test_midnight_crossing() -> None:
    local_midnight = utc(2024, 11, 2, 4, 0)
    assert current_program(SHUFFLED, local_midnight) is P5
    assert elapsed_minutes(P5, local_midnight) == 30
    assert remaining_minutes(P5, local_midnight) == 30
    assert clock_time(P5.starts_at, NY) == "11:30 PM"
    assert clock_time(P5.ends_at, NY) == "12:30 AM"
    # It belongs to both local days it touches.
    assert day_schedule(SHUFFLED, SEED_NOW, NY) == SCHEDULE
    assert day_schedule(SHUFFLED, local_midnight, NY) == [P5]


def test_day_schedule_uses_the_local_date() -> None:
    # 23:00 Friday in New York is already Saturday in UTC.
    late_friday = utc(2024, 11, 2, 3, 0)
    assert day_schedule(SHUFFLED, late_friday, NY) == SCHEDULE
    assert day_schedule(SHUFFLED, late_friday, "UTC") == [P4, P5]  # prog_003 ends at 00:00Z


def test_day_schedule_excludes_touching_programs() -> None:
    day_start, day_end = local_day_bounds(SEED_NOW, NY)
    ends_at_start = prog("before", day_start - timedelta(hours=1), day_start)
    starts_at_end = prog("after", day_end, day_end + timedelta(hours=1))
    spans_day = prog("marathon", day_start - timedelta(hours=1), day_end + timedelta(hours=1))
    programs = [starts_at_end, spans_day, ends_at_start]
    assert day_schedule(programs, SEED_NOW, NY) == [spans_day]


def hourly(first: datetime, hours: int) -> list[Program]:
    return [
        prog(f"h{i:02d}", first + timedelta(hours=i), first + timedelta(hours=i + 1))
        for i in range(hours)
    ]


def test_day_schedule_spring_forward_has_23_hours() -> None:
    programs = hourly(utc(2024, 3, 9, 0, 0), 72)[::-1]
    day = day_schedule(programs, utc(2024, 3, 10, 12, 0), NY)
    assert len(day) == 23
    assert day[0].starts_at == utc(2024, 3, 10, 5, 0)  # midnight EST
    assert day[-1].ends_at == utc(2024, 3, 11, 4, 0)  # midnight EDT
    assert [clock_time(p.starts_at, NY) for p in day[1:4]] == ["1:00 AM", "3:00 AM", "4:00 AM"]


def test_day_schedule_fall_back_has_25_hours() -> None:
    programs = hourly(utc(2024, 11, 2, 0, 0), 72)[::-1]
    day = day_schedule(programs, utc(2024, 11, 3, 12, 0), NY)
    assert len(day) == 25
    assert day[0].starts_at == utc(2024, 11, 3, 4, 0)  # midnight EDT
    assert day[-1].ends_at == utc(2024, 11, 4, 5, 0)  # midnight EST
    assert [clock_time(p.starts_at, NY) for p in day[1:4]] == ["1:00 AM", "1:00 AM", "2:00 AM"]


@pytest.mark.parametrize(
    ("tz", "now", "start", "end"),
    [
        (NY, utc(2024, 3, 10, 12), utc(2024, 3, 10, 5), utc(2024, 3, 11, 4)),
        (NY, utc(2024, 11, 3, 12), utc(2024, 11, 3, 4), utc(2024, 11, 4, 5)),
        ("UTC", utc(2024, 11, 3, 12), utc(2024, 11, 3), utc(2024, 11, 4)),
        # Havana skips midnight in March and repeats it in November.
        ("America/Havana", utc(2024, 3, 10, 12), utc(2024, 3, 10, 5), utc(2024, 3, 11, 4)),
        ("America/Havana", utc(2024, 11, 3, 12), utc(2024, 11, 3, 4), utc(2024, 11, 4, 5)),
    ],
)
def test_local_day_bounds(tz: str, now: datetime, start: datetime, end: datetime) -> None:
    assert local_day_bounds(now, tz) == (start, end)


def test_day_schedule_unknown_timezone() -> None:
    with pytest.raises(UnknownTimezone):
        day_schedule(SCHEDULE, SEED_NOW, "Nowhere/Special")


def test_program_times_become_utc_across_fall_back() -> None:
    # 00:30 EDT to 02:30 EST is three real hours, though the wall clock says two.
    ny = ZoneInfo(NY)
    p = prog(
        "late", datetime(2024, 11, 3, 0, 30, tzinfo=ny), datetime(2024, 11, 3, 2, 30, tzinfo=ny)
    )
    assert p.starts_at == utc(2024, 11, 3, 4, 30)
    assert p.starts_at.tzinfo is UTC and p.ends_at.tzinfo is UTC
    assert p.duration == timedelta(hours=3)
    assert remaining_minutes(p, p.starts_at) == 180
    second_one_thirty = datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ny)
    assert elapsed_minutes(p, second_one_thirty) == 120


def test_overlapping_programs() -> None:
    # Bad data: a breaking-news slot cuts into prog_003.
    news = prog("news", utc(2024, 11, 1, 23, 30), utc(2024, 11, 2, 0, 15))
    programs = [*SHUFFLED, news]
    assert current_program(programs, utc(2024, 11, 1, 23, 45)) is news
    assert next_program(programs, utc(2024, 11, 1, 23, 10)) is P4
    assert next_boundary(programs, utc(2024, 11, 1, 23, 10)) == news.starts_at


def test_program_refuses_bad_times() -> None:
    with pytest.raises(InvalidProgram) as info:
        prog("naive", datetime(2024, 11, 1, 18, 15), utc(2024, 11, 1, 19))
    assert info.value.field == "starts_at"
    with pytest.raises(InvalidProgram) as info:
        prog("empty", utc(2024, 11, 1, 19), utc(2024, 11, 1, 19))
    assert info.value.field == "ends_at"
    with pytest.raises(InvalidProgram) as info:
        prog("inverted", utc(2024, 11, 1, 19), utc(2024, 11, 1, 18))
    assert info.value.field == "ends_at"


def test_program_decodes_and_is_frozen() -> None:
    raw = (
        b'{"program_id":"prog_002","title":"Behind the Laughs",'
        b'"starts_at":"2024-11-01T18:15:00-04:00","ends_at":"2024-11-01T23:00:00Z"}'
    )
    p = msgspec.json.decode(raw, type=Program)
    assert p == P2
    assert p.description is None and p.thumbnail_url is None
    with pytest.raises(AttributeError):
        p.title = "other"  # type: ignore[misc]
    bad = raw.replace(b"23:00:00Z", b"22:00:00Z")
    with pytest.raises(msgspec.ValidationError, match="ends_at"):
        msgspec.json.decode(bad, type=Program)


def test_naive_now_refused() -> None:
    naive = datetime(2024, 11, 1, 18, 31)
    with pytest.raises(ValueError, match="now"):
        current_program(SCHEDULE, naive)
    with pytest.raises(ValueError, match="now"):
        elapsed_minutes(P2, naive)
    with pytest.raises(ValueError, match="now"):
        day_schedule(SCHEDULE, naive, NY)
