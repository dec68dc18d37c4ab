"""Websocket frame splitting (RFC 6455 §5.2) shared by the floor server and the load generator.

Standard library only, so the floor stays the least a Python fan-out server can do.
"""

from __future__ import annotations


def next_frame(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """The frame starting at `data[pos]` as (first byte, payload start, payload end), or None
    while its header or payload is still incomplete (keep the bytes from `pos` and wait).

    A masked frame's 4-byte key is stepped over; its payload is returned still masked.
    """
    n = len(data)
    if n - pos < 2:
        return None
    b1 = data[pos + 1]
    length = b1 & 0x7F
    start = pos + 2
    if length == 126:
        if n - start < 2:
            return None
        length = int.from_bytes(data[start : start + 2], "big")
        start += 2
    elif length == 127:
        if n - start < 8:
            return None
        length = int.from_bytes(data[start : start + 8], "big")
        start += 8
    if b1 & 0x80:
        start += 4
    end = start + length
    if end > n:
        return None
    return data[pos], start, end
