"""Shared msgspec encoders and decoders, built once per process."""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

from protocol.errors import BadRequest, Unprocessable
from protocol.limits import check_decoded

T = TypeVar("T")

encoder: Final = msgspec.json.Encoder()
TOO_DEEP: Final = "JSON nested too deeply"


def encode(obj: Any) -> bytes:
    return encoder.encode(obj)


def _field_of(err: msgspec.ValidationError) -> str | None:
    """msgspec reports `... - at `$.stream.channel_id``; turn that into `stream.channel_id`."""
    text = str(err)
    marker = "at `$"
    if marker not in text:
        return None
    path = text.rsplit(marker, 1)[1].rstrip("`")
    path = path.lstrip(".").replace("[", ".").replace("]", "")
    return path or None


def _missing_field(text: str) -> str | None:
    # "Object missing required field `channel_id`"
    if "missing required field `" in text:
        return text.split("missing required field `", 1)[1].split("`", 1)[0]
    return None


def _unprocessable(err: msgspec.ValidationError) -> Unprocessable:
    text = str(err)
    field = ".".join(p for p in (_field_of(err), _missing_field(text)) if p) or None
    return Unprocessable(text.split(" - at ")[0] + (f": {field}" if field else ""), field=field)


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode JSON into `type_`; raise 400 for malformed or too deeply nested JSON, 422 naming
    the field for bad values, including those the store could not hold (protocol.limits)."""
    try:
        value = msgspec.json.decode(data, type=type_)
        check_decoded(value)
    except msgspec.ValidationError as err:
        raise _unprocessable(err) from None
    except msgspec.DecodeError as err:
        raise BadRequest(f"Malformed JSON body: {err}", field="body") from None
    except RecursionError:
        raise BadRequest(TOO_DEEP, field="body") from None
    return value


def convert(obj: Any, type_: type[T]) -> T:
    """Like `decode` for already-parsed values (query strings), with `str_keys` coercion."""
    try:
        value = msgspec.convert(obj, type=type_, strict=False)
        check_decoded(value)
    except msgspec.ValidationError as err:
        raise _unprocessable(err) from None
    except RecursionError:
        raise BadRequest(TOO_DEEP, field="body") from None
    return value
