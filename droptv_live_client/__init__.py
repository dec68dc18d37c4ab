"""A small client for the droptv-live websocket (protocol v1), for players, tests and benchmarks.

    async with LiveClient([url1, url2], "creator_001", session_id, token) as live:
        async for msg in live:
            ...  # dicts: {"type": "viewers", "epoch": ..., "seq": ..., ...}

What it guarantees:
- It connects to the first reachable instance URL, and on a drop (network
  error, 1006, 1012 draining, 4008 too slow, 4029 rate-limited: after a pause
  of about `backoff_max`) reconnects with capped, jittered exponential
  back-off, rotating through the URLs, then sends `resume` with
  the last epoch and seq it saw, so the server answers with a `hello` snapshot
  when anything was missed.
- Channel events (`viewers`, `epg`, `stream`) are delivered at most once and
  in order per epoch: a replayed or older seq is dropped. A new epoch (the
  server's sequence restarted) is accepted and reported as it comes.
- Terminal closes (4001 unauthorized, 4003 forbidden, 4004 not found, 4009
  ended, 1009 too big) end iteration with `LiveClosed` carrying the code: a
  reconnect would fail the same way.

The package needs only aiohttp: it does not import the server's packages.
"""

from droptv_live_client.client import LiveClient, LiveClosed
from droptv_live_client.constants import (
    CHANNEL_EVENTS,
    HANDSHAKE_CLOSE_CODES,
    RECONNECT_CODES,
    SUBPROTOCOL,
    TERMINAL_CODES,
    CloseCode,
)

__all__ = [
    "CHANNEL_EVENTS",
    "HANDSHAKE_CLOSE_CODES",
    "RECONNECT_CODES",
    "SUBPROTOCOL",
    "TERMINAL_CODES",
    "CloseCode",
    "LiveClient",
    "LiveClosed",
]
