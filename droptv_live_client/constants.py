"""The wire constants of protocol v1 as a client needs them: subprotocol, close codes, reconnect rule.

These mirror `protocol/` on the server side (the client is a standalone
library and must not import the server's packages); tests/test_client_constants.py
fails when the two drift apart.
"""

from __future__ import annotations

import enum
from typing import Final

SUBPROTOCOL: Final = "droptv.live.v1"

# Messages that carry a channel `seq`: replays of these after a resume are dropped.
CHANNEL_EVENTS: Final = frozenset({"viewers", "epg", "stream"})


class CloseCode(enum.IntEnum):
    """Websocket close codes the server sends, and what this client does on each."""

    NORMAL = 1000  # the server is done with this socket: iteration ends
    TOO_BIG = 1009  # a frame over the size limit: the same frame would fail again
    DRAINING = 1012  # instance restarting: reconnect to the next URL at once and resume
    UNAUTHORIZED = 4001  # bad or expired bearer token: the caller must get a new one
    FORBIDDEN = 4003  # the session belongs to someone else
    SESSION_NOT_FOUND = 4004  # unknown or not live: the caller must POST watch again
    TOO_SLOW = 4008  # the client fell too far behind: reconnect and resume
    SESSION_ENDED = 4009  # ended elsewhere or expired
    RATE_LIMITED = 4029  # sent past its message budget: back off, then reconnect and resume


# Closes after which a reconnect would fail the same way: iteration ends with LiveClosed.
TERMINAL_CODES: Final = frozenset(
    {
        CloseCode.TOO_BIG,
        CloseCode.UNAUTHORIZED,
        CloseCode.FORBIDDEN,
        CloseCode.SESSION_NOT_FOUND,
        CloseCode.SESSION_ENDED,
    }
)
# Closes the server sends to ask for a reconnect and resume. Any other code that is neither
# terminal nor NORMAL (1006 abnormal, 1011 internal error) is retried the same way.
RECONNECT_CODES: Final = frozenset({CloseCode.DRAINING, CloseCode.TOO_SLOW, CloseCode.RATE_LIMITED})

# A refused websocket handshake (HTTP status) means what the matching close code means.
HANDSHAKE_CLOSE_CODES: Final = {
    401: CloseCode.UNAUTHORIZED,
    403: CloseCode.FORBIDDEN,
    404: CloseCode.SESSION_NOT_FOUND,
}
