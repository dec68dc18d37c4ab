"""protocol.format: the seed's display strings and their edges (units, DST, midnight)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from protocol.format import (
    UnknownTimezone,
    clock_duration,
    clock_time,
    compact_count,
    iso_utc,
    local_date,
    parse_iso_utc,
    uptime,
    zone,
)

NY = "America/New_York"


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0"),
        (1, "1"),
        (999, "999"),
        (1000, "1K"),
        (1099, "1K"),
        (1100, "1.1K"),
        (13000, "13K"),
        (13245, "13.2K"),
        (18500, "18.5K"),
        (52000, "52K"),
        (999_999, "999.9K"),
        (1_000_000, "1M"),
        (1_200_000, "1.2M"),
        (1_250_000, "1.2M"),
        (999_999_999, "999.9M"),
        (1_000_000_000, "1B"),
        (2_560_000_000, "2.5B"),
    ],
)
def test_compact_count(n: int, expected: str) -> None:
    assert compact_count(n) == expected


def test_compact_count_never_rounds_up() -> None:
    # 13_299 is 13.299K: rounding would say 13.3K, more viewers than there are.
    assert compact_count(13_299) == "13.2K"
    assert compact_count(1_999_999) == "1.9M"


def test_compact_count_negative() -> None:
    with pytest.raises(ValueError, match="count"):
        compact_count(-1)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0:00"),
        (59, "0:59"),
        (60, "1:00"),
        (1472, "24:32"),
        (2340, "39:00"),
        (2700, "45:00"),
        (3599, "59:59"),
        (3600, "1:00:00"),
        (4500, "1:15:00"),
        (36_005, "10:00:05"),
    ],
)
def test_clock_duration(seconds: int, expected: str) -> None:
    assert clock_duration(seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0m"),
        (59, "0m"),
        (300, "5m"),
        (3599, "59m"),
        (3600, "1h 0m"),
        (4500, "1h 15m"),
        (90_000, "25h 0m"),
    ],
)
def test_uptime(seconds: int, expected: str) -> None:
    assert uptime(seconds) == expected


@pytest.mark.parametrize("fn", [clock_duration, uptime])
def test_durations_refuse_negative(fn: Callable[[int], str]) -> None:
    with pytest.raises(ValueError, match="seconds"):
        fn(-1)


@pytest.mark.parametrize(
    ("at", "tz", "expected"),
    [
        (utc(2024, 11, 1, 23, 0), NY, "7:00 PM"),  # the seed's prog_003 start
        (utc(2024, 11, 1, 23, 0), "UTC", "11:00 PM"),
        (utc(2024, 11, 1, 4, 5), NY, "12:05 AM"),
        (utc(2024, 11, 1, 16, 0), NY, "12:00 PM"),
        (utc(2024, 11, 1, 3, 59), NY, "11:59 PM"),  # still the previous local day
        (utc(2024, 11, 1, 0, 0), "Asia/Kolkata", "5:30 AM"),
    ],
)
def test_clock_time(at: datetime, tz: str, expected: str) -> None:
    assert clock_time(at, tz) == expected


def test_clock_time_spring_forward() -> None:
    # 2024-03-10 in New York: 1:59 AM EST is followed by 3:00 AM EDT.
    assert clock_time(utc(2024, 3, 10, 6, 59), NY) == "1:59 AM"
    assert clock_time(utc(2024, 3, 10, 7, 0), NY) == "3:00 AM"


def test_clock_time_fall_back() -> None:
    # 2024-11-03 in New York: 1:30 AM happens twice, an hour apart.
    assert clock_time(utc(2024, 11, 3, 5, 30), NY) == "1:30 AM"
    assert clock_time(utc(2024, 11, 3, 6, 30), NY) == "1:30 AM"
    assert clock_time(utc(2024, 11, 3, 7, 0), NY) == "2:00 AM"


def test_clock_time_accepts_any_aware_input() -> None:
    at = datetime(2024, 11, 1, 19, 0, tzinfo=timezone(timedelta(hours=-4)))
    assert clock_time(at, NY) == "7:00 PM"


@pytest.mark.parametrize("tz", ["Mars/Olympus", "utc", "", "../etc/passwd", "/etc/localtime"])
def test_unknown_timezone(tz: str) -> None:
    with pytest.raises(UnknownTimezone) as info:
        clock_time(utc(2024, 11, 1), tz)
    assert info.value.field == "timezone"
    assert info.value.tz == tz
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownTimezone):
        local_date(utc(2024, 11, 1), tz)
    with pytest.raises(UnknownTimezone):
        zone(tz)


def test_naive_datetime_refused() -> None:
    naive = datetime(2024, 11, 1, 18, 15)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock_time(naive, NY)
    with pytest.raises(ValueError, match="timezone-aware"):
        iso_utc(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        local_date(naive, NY)


def test_iso_utc() -> None:
    assert iso_utc(utc(2024, 11, 1, 18, 15)) == "2024-11-01T18:15:00Z"
    assert iso_utc(utc(2024, 11, 1, 23, 59, 59, 999_999)) == "2024-11-01T23:59:59Z"
    est = timezone(timedelta(hours=-5))
    assert iso_utc(datetime(2024, 11, 3, 20, 0, tzinfo=est)) == "2024-11-04T01:00:00Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-11-01T18:15:00Z", utc(2024, 11, 1, 18, 15)),
        ("2024-11-01T14:15:00-04:00", utc(2024, 11, 1, 18, 15)),
        ("2024-11-01T18:15:00+00:00", utc(2024, 11, 1, 18, 15)),
        ("2024-11-02T05:45:30.5+05:30", utc(2024, 11, 2, 0, 15, 30, 500_000)),
    ],
)
def test_parse_iso_utc(text: str, expected: datetime) -> None:
    parsed = parse_iso_utc(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2024-13-01T00:00:00Z", "2024-11-01T18:15:00", "2024-11-01"]
)
def test_parse_iso_utc_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso_utc(text)


def test_iso_round_trip() -> None:
    at = utc(2024, 11, 1, 18, 30, 45)
    assert parse_iso_utc(iso_utc(at)) == at


@pytest.mark.parametrize(
    ("at", "tz", "expected"),
    [
        (utc(2024, 11, 1, 18, 15), NY, "2024-11-01"),
        (utc(2024, 11, 2, 3, 59), NY, "2024-11-01"),  # evening in New York, next day in UTC
        (utc(2024, 11, 2, 4, 0), NY, "2024-11-02"),  # local midnight (EDT)
        (utc(2024, 11, 2, 3, 59), "UTC", "2024-11-02"),
        (utc(2024, 11, 1, 20, 0), "Pacific/Kiritimati", "2024-11-02"),
    ],
)
def test_local_date(at: datetime, tz: str, expected: str) -> None:
    assert local_date(at, tz) == expected
