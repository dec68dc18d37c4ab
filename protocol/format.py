"""Display strings of the REST contract: "13.2K", "24:32", "1h 15m", "7:00 PM", ISO instants.

Pure functions: no I/O beyond the zone database, no clock reads, no locale (the
AM/PM marker is built here rather than by `strftime("%p")`, which is locale-bound).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol.errors import Unprocessable
from protocol.limits import EARLIEST, LATEST, is_zone

__all__ = [
    "UnknownTimezone",
    "clock_duration",
    "clock_time",
    "compact_count",
    "iso_utc",
    "local_date",
    "parse_iso_utc",
    "require_aware",
    "uptime",
    "zone",
]

# Largest unit first; a count takes the first unit it reaches.
COMPACT_UNITS: Final[tuple[tuple[int, str], ...]] = (
    (1_000_000_000, "B"),
    (1_000_000, "M"),
    (1_000, "K"),
)
SECONDS_PER_MINUTE: Final = 60
SECONDS_PER_HOUR: Final = 3600


class UnknownTimezone(Unprocessable, ValueError):
    """The client named a time zone that is not an IANA zone this process knows (422, field timezone)."""

    def __init__(self, tz: str) -> None:
        super().__init__(
            f"Unknown timezone: {tz!r} (expected an IANA name such as America/New_York)",
            field="timezone",
        )
        self.tz: Final = tz


def zone(tz: str) -> ZoneInfo:
    """The IANA zone `tz`; raises `UnknownTimezone` for any name that is not one.

    Only names of the zone database count: malformed keys, paths, zone
    directories ("America") and data files are reported like unknown names,
    so callers need to catch one error only.
    """
    if not is_zone(tz):
        raise UnknownTimezone(tz)
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise UnknownTimezone(tz) from exc


def require_aware(at: datetime, field: str) -> datetime:
    """`at` as UTC; raises ValueError naming `field` if it is naive.

    A naive value would otherwise be read in the host's local zone, which makes
    the result depend on the machine rather than on the arguments.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{field} must be timezone-aware")
    return at.astimezone(UTC)


def _non_negative(value: int, field: str) -> None:
    if value < 0:
        raise ValueError(f"{field} must be >= 0, got {value}")


def compact_count(n: int) -> str:
    """`n` with K/M/B and at most one decimal, never overstating the count.

    The decimal is truncated, not rounded, so 999_999 is "999.9K" rather than
    "1000K" or "1M"; a trailing ".0" is dropped ("13K"). Raises ValueError if n < 0.
    """
    _non_negative(n, "count")
    for unit, suffix in COMPACT_UNITS:
        if n >= unit:
            whole, tenth = divmod(n * 10 // unit, 10)
            return f"{whole}{suffix}" if tenth == 0 else f"{whole}.{tenth}{suffix}"
    return str(n)


def clock_duration(seconds: int) -> str:
    """A media length as on a player: "M:SS" under an hour, "H:MM:SS" from an hour.

    Raises ValueError if seconds < 0.
    """
    _non_negative(seconds, "seconds")
    hours, rest = divmod(seconds, SECONDS_PER_HOUR)
    minutes, secs = divmod(rest, SECONDS_PER_MINUTE)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def uptime(seconds: int) -> str:
    """Uptime as "1h 15m", or "5m" under an hour; seconds are dropped, hours never become days.

    Raises ValueError if seconds < 0.
    """
    _non_negative(seconds, "seconds")
    hours, rest = divmod(seconds, SECONDS_PER_HOUR)
    minutes = rest // SECONDS_PER_MINUTE
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"


def clock_time(at: datetime, tz: str) -> str:
    """The wall-clock time of instant `at` in zone `tz`, 12-hour: "7:00 PM", "12:05 AM".

    Correct across DST changes because the instant is converted, not the wall time.
    Raises `UnknownTimezone` for a bad `tz` and ValueError for a naive `at`.
    """
    local = require_aware(at, "at").astimezone(zone(tz))
    hour12 = local.hour % 12 or 12
    marker = "AM" if local.hour < 12 else "PM"
    return f"{hour12}:{local.minute:02d} {marker}"


def iso_utc(at: datetime) -> str:
    """`at` as "2024-11-01T18:15:00Z": UTC, whole seconds (truncated), Z suffix.

    Raises ValueError for a naive `at`.
    """
    utc = require_aware(at, "at").replace(microsecond=0)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(s: str) -> datetime:
    """An aware UTC datetime from ISO 8601 text with "Z" or a numeric offset.

    Raises ValueError for text that is not ISO 8601, carries no offset (a
    missing offset is refused rather than guessed) or lies outside the
    window of protocol.limits.
    """
    try:
        parsed = datetime.fromisoformat(s)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not an ISO 8601 timestamp: {s!r}") from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"timestamp has no UTC offset: {s!r}")
    try:
        if EARLIEST <= parsed < LATEST:
            return parsed.astimezone(UTC)
    except OverflowError:
        pass
    raise ValueError(f"timestamp outside {EARLIEST.year}..{LATEST.year - 1}: {s!r}")


def local_date(at: datetime, tz: str) -> str:
    """The calendar date ("2024-11-01") of instant `at` in zone `tz`.

    Raises `UnknownTimezone` for a bad `tz` and ValueError for a naive `at`.
    """
    return require_aware(at, "at").astimezone(zone(tz)).date().isoformat()


def utc_seconds(at: datetime) -> datetime:
    """`at` in UTC without microseconds, so it encodes as the seed's "2024-11-01T18:15:00Z"."""
    return require_aware(at, "at").replace(microsecond=0)
