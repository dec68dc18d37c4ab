"""What the edge accepts: the bounds every decoded value is held to, so the store can keep it.

A value that passes `decode`/`convert` (protocol.codec) can be written to
PostgreSQL, read back, edited and deleted: integers fit the column types
(int4 unless stated), text has no NUL (PostgreSQL text cannot hold one),
instants lie in `EARLIEST`..`LATEST` (so UTC conversion, arithmetic and
formatting never overflow), time-zone names are real IANA zones, and JSON
nests no deeper than `MAX_JSON_DEPTH`.

`check_decoded` walks a decoded value once; the per-type bounds are the
`Annotated` aliases below, which also show up in the OpenAPI schemas.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec

from protocol.errors import BadRequest, Unprocessable

INT32_MAX: Final = 2_147_483_647
INT64_MAX: Final = 9_223_372_036_854_775_807
# Instants outside this window are client bugs; inside it every conversion is safe.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
# Arrays/objects kept from a body nest at most this deep (400 past it); JSON deeper than the
# interpreter's recursion limit (~1000) is refused while decoding, unknown fields included.
MAX_JSON_DEPTH: Final = 64
# A float a player may report (milliseconds, seconds, ratios): finite and far below overflow.
FLOAT_MAX: Final = 1e12

Int32 = Annotated[int, msgspec.Meta(ge=-INT32_MAX - 1, le=INT32_MAX)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)]
NonNegative = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]
BigNonNegative = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
FiniteNonNegative = Annotated[float, msgspec.Meta(ge=0, le=FLOAT_MAX)]


def check_instant(at: datetime, field: str) -> datetime:
    """`at` as UTC if it is aware and inside the window; 422 naming `field` otherwise."""
    try:
        if at.tzinfo is None or at.utcoffset() is None:
            raise Unprocessable(f"{field} must carry a UTC offset", field=field)
        if EARLIEST <= at < LATEST:
            return at.astimezone(UTC)
    except OverflowError:
        pass
    raise Unprocessable(
        f"{field} must lie between {EARLIEST.year} and {LATEST.year - 1}", field=field
    )


@functools.cache
def _zones() -> frozenset[str]:
    # Read once per process from the system zoneinfo or the tzdata wheel: static data.
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def is_zone(name: str) -> bool:
    """True when `name` is a real IANA zone: directories, paths and data files are not."""
    return name in _zones()


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}.{key}" if path else str(key)
    return f"{path}.{key}" if path else key


def check_decoded(value: Any, path: str = "", depth: int = 0) -> None:
    """Raise 422 naming the field for text with NUL or an instant out of the window, and 400
    for arrays or objects nested deeper than `MAX_JSON_DEPTH`.

    Walks Structs, lists, tuples and dicts; `msgspec.Raw` is left for its own
    decoder. Cost: one pass over the decoded value.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise Unprocessable(f"{path or 'value'} must not contain NUL characters", field=path)
    elif isinstance(value, datetime):
        check_instant(value, path or "value")
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            check_decoded(getattr(value, name), _join(path, name), depth)
    elif isinstance(value, list | tuple | Mapping):
        if depth >= MAX_JSON_DEPTH:
            raise BadRequest(
                f"JSON nested deeper than {MAX_JSON_DEPTH} levels", field=path or "body"
            )
        if isinstance(value, Mapping):
            for key, item in value.items():
                check_decoded(key, path, depth + 1)
                check_decoded(item, _join(path, str(key)), depth + 1)
        else:
            for i, item in enumerate(value):
                check_decoded(item, _join(path, i), depth + 1)
