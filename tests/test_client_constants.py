"""The client library re-declares the wire constants (it must not import protocol/): keep them equal.

The expected action per close code is written here, by name, from the rule
documented on `protocol.errors.CloseCode`; a code added to protocol fails
`test_every_protocol_close_code_is_classified` until the client knows it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import droptv_live_client
from droptv_live_client import (
    HANDSHAKE_CLOSE_CODES,
    RECONNECT_CODES,
    SUBPROTOCOL,
    TERMINAL_CODES,
    CloseCode,
)
from protocol.errors import CloseCode as ServerCloseCode
from protocol.messages import PROTOCOL

ROOT = Path(__file__).resolve().parent.parent

# What a client must do on each code, per protocol.errors.CloseCode's comments.
ACTION = {
    "NORMAL": "end",
    "TOO_BIG": "terminal",
    "DRAINING": "reconnect",
    "UNAUTHORIZED": "terminal",  # needs a new token: the client cannot mint one
    "FORBIDDEN": "terminal",
    "SESSION_NOT_FOUND": "terminal",
    "TOO_SLOW": "reconnect",
    "SESSION_ENDED": "terminal",
    "RATE_LIMITED": "reconnect",
}


def test_subprotocol_matches_the_server() -> None:
    assert SUBPROTOCOL == PROTOCOL


def test_close_codes_match_the_server() -> None:
    assert {c.name: c.value for c in CloseCode} == {c.name: c.value for c in ServerCloseCode}


def test_every_protocol_close_code_is_classified() -> None:
    assert set(ACTION) == {c.name for c in ServerCloseCode}


def test_terminal_and_reconnect_codes_follow_the_documented_rule() -> None:
    assert {c.name for c in TERMINAL_CODES} == {n for n, a in ACTION.items() if a == "terminal"}
    assert {c.name for c in RECONNECT_CODES} == {n for n, a in ACTION.items() if a == "reconnect"}
    assert not TERMINAL_CODES & RECONNECT_CODES
    assert CloseCode.NORMAL not in TERMINAL_CODES | RECONNECT_CODES


def test_refused_handshakes_map_to_terminal_codes() -> None:
    assert HANDSHAKE_CLOSE_CODES == {
        401: ServerCloseCode.UNAUTHORIZED,
        403: ServerCloseCode.FORBIDDEN,
        404: ServerCloseCode.SESSION_NOT_FOUND,
    }
    assert set(HANDSHAKE_CLOSE_CODES.values()) <= TERMINAL_CODES


def test_the_client_stands_alone() -> None:
    """Importing it loads none of protocol/, store/, server/ (test_sourcecode checks the source)."""
    assert (Path(droptv_live_client.__file__).parent / "py.typed").is_file()
    probe = (
        "import sys, droptv_live_client; "
        "print(sorted({'protocol', 'store', 'server'} & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
