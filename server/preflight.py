"""Checks `serve` makes before it starts anything, and the error that ends it in one line.

An operator error (port taken, database unreachable, data dir in use, workers
crash-looping) is printed by the CLI as one line naming what to fix, and the
process exits 1 (2 for a bad setting, as argparse does for a bad flag).
"""

from __future__ import annotations

import errno
import socket
from typing import Final

# A worker exits with this when it cannot listen: the supervisor stops instead of restarting.
EXIT_CANNOT_LISTEN: Final = 3

_HINTS: Final = {
    errno.EADDRINUSE: "address already in use (another server there? pick another --port / PORT)",
    errno.EADDRNOTAVAIL: "not an address of this machine (--host / DROPTV_HOST)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


class OperatorError(RuntimeError):
    """A failure the operator must fix; its message is the one line the CLI prints."""


def listen_error(host: str, port: int, exc: OSError) -> OperatorError:
    reason = _HINTS.get(exc.errno or 0, exc.strerror or str(exc))
    return OperatorError(f"cannot listen on {host}:{port}: {reason}")


def check_port_free(host: str, port: int) -> None:
    """Bind (SO_REUSEADDR, as the server will; no SO_REUSEPORT, so a --workers peer counts)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OperatorError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise listen_error(host, port, exc) from None
