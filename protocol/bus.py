"""What instances tell each other over the bus: a small header and a payload.

Wire form: the header as a JSON array, one newline, then the payload bytes.
JSON never contains a raw newline, so the first b"\\n" always ends the header,
and the payload is passed on without being parsed or copied into a new object.

Kinds:

- `broadcast`: the payload is the exact JSON text of a server message for every
  watcher of the channel (`viewers`, `stream`); receivers write it as is.
- `epg`: the payload is an `EpgEvent`; receivers render it once per time zone
  of their watchers (`start_time_formatted` is local time), at `now` = `ts`,
  so every instance produces the same bytes for the same zone.
- `session_ended`, `quality_changed`: addressed to one session (`target`); the
  instance holding its socket acts, the others ignore it. No seq is consumed.
- `tokens`: every watcher of the channel needs a new stream token (key rotation).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from protocol.epg import Program
from protocol.values import SessionCloseReason, SessionEndState

__all__ = ["Envelope", "EpgEvent", "Kind", "SessionEvent", "pack", "unpack"]


class Kind(enum.StrEnum):
    BROADCAST = "broadcast"
    EPG = "epg"
    SESSION_ENDED = "session_ended"
    QUALITY_CHANGED = "quality_changed"
    TOKENS = "tokens"


class Envelope(msgspec.Struct, kw_only=True, frozen=True, array_like=True):
    """`type` is the server message type a broadcast carries (counters, skip decisions);
    `seq` is 0 for kinds that consume none; `ts` is the origin time (unix seconds)."""

    channel: str
    kind: Kind
    type: str
    epoch: str
    seq: int
    instance_id: str
    ts: float
    target: str | None = None


class EpgEvent(msgspec.Struct, kw_only=True, frozen=True):
    """The programs on air and next at `ts`; the receiver renders per zone."""

    programs: list[Program]


class SessionEvent(msgspec.Struct, kw_only=True, frozen=True):
    """`keep`: the socket (conn id) that replaced the session's others, which must stay open."""

    state: SessionEndState
    reason: SessionCloseReason
    keep: str | None = None


class MalformedBusMessage(ValueError):
    """A bus message that is not `header \\n payload`: a foreign publisher or a bug."""


_encoder: Final = msgspec.json.Encoder()
_header: Final = msgspec.json.Decoder(Envelope)
SEPARATOR: Final = b"\n"


def pack(envelope: Envelope, payload: bytes) -> bytes:
    return _encoder.encode(envelope) + SEPARATOR + payload


def unpack(data: bytes) -> tuple[Envelope, bytes]:
    """Split a bus message; raises MalformedBusMessage for anything else."""
    head, sep, payload = data.partition(SEPARATOR)
    if not sep:
        raise MalformedBusMessage("no header separator")
    try:
        return _header.decode(head), payload
    except msgspec.DecodeError as err:
        raise MalformedBusMessage(str(err)) from None
