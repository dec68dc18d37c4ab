"""Websocket frames, built once and written as the same bytes to many sockets.

`text_frame` wraps an encoded message in an unmasked, unfragmented text frame
(RFC 6455, server to client); `join_events` concatenates the frames of the
channel events queued in one loop turn for one kind of socket, so the hub
writes them with one `transport.write`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from protocol.messages import LATEST_VALUE_TYPES

__all__ = ["PING_FRAME", "Audience", "Queued", "join_events", "text_frame"]

_OP_TEXT: Final = 0x81  # FIN + text
PING_FRAME: Final = b"\x89\x00"  # FIN + ping, empty payload: the same bytes for every socket


# A queued channel event: type, epoch, seq, origin ts, frame or render(zone) -> frame.
Queued = tuple[str, str, int, float, bytes | None, Callable[[str], bytes] | None]
Audience = tuple[str, bool, int, str]


def join_events(
    events: list[Queued], key: Audience, by_zone: dict[tuple[int, str], bytes]
) -> tuple[bytes, list[str]]:
    """The bytes (and message types) of `events` for the sockets of `key`: their zone, whether
    they are over the soft limit (latest-value messages skipped), and the hello position
    (seq, epoch) that already covers events up to it (-1: none)."""
    zone, over_soft, seen, seen_epoch = key
    parts: list[bytes] = []
    types: list[str] = []
    for i, (type_, epoch, seq, _, frame, render) in enumerate(events):
        if (seq <= seen and epoch == seen_epoch) or (over_soft and type_ in LATEST_VALUE_TYPES):
            continue
        if frame is None:
            assert render is not None
            frame = by_zone.get((i, zone))
            if frame is None:
                frame = by_zone[(i, zone)] = render(zone)
        parts.append(frame)
        types.append(type_)
    if not parts:
        return b"", types
    return (parts[0] if len(parts) == 1 else b"".join(parts)), types


def text_frame(payload: bytes) -> bytes:
    """A complete server-to-client websocket text frame (RFC 6455: unmasked, unfragmented)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", _OP_TEXT, n)
    elif n < 65536:
        header = struct.pack("!BBH", _OP_TEXT, 126, n)
    else:
        header = struct.pack("!BBQ", _OP_TEXT, 127, n)
    return header + payload
