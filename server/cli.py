"""`droptv-live`: serve, migrate, seed and mint development tokens.

Flags are taken as written and validated with the environment in one place
(server.config.load_settings), so `--port abc` and `PORT=abc` fail alike, in
one line. Exit status: 0 done, 1 an operator error (port taken, database
unreachable, …: one line on stderr), 2 a bad flag or setting.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from server.auth import mint_bearer
from server.config import ConfigError, Port, Settings, describe, load_settings, unknown_env
from server.logs import setup_logging
from server.preflight import OperatorError
from server.runner import run_backends, run_migrate, run_seed, run_serve

log = logging.getLogger("droptv_live")


def _db_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        help="PostgreSQL DSN (env DATABASE_URL); "
        "without it an embedded PostgreSQL runs with data under --data-dir",
    )
    p.add_argument("--data-dir", help="where embedded servers keep data (default ./.droptv)")


def _port(raw: str) -> int:
    if raw.strip().isdigit() and 1 <= int(raw) <= 65535:
        return int(raw)
    raise argparse.ArgumentTypeError(f"expected {describe(Port)}, got {raw!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="droptv-live", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the HTTP and websocket server",
        description="Run the server: migrate, load the demo world on first "
        "start, and serve REST and websockets on uvloop.",
    )
    serve.add_argument(
        "--host", help="bind address (default 127.0.0.1; 0.0.0.0 once JWT_SECRET is set)"
    )
    serve.add_argument("--port", help="port 1-65535 (env PORT, default 8080)")
    _db_flags(serve)
    serve.add_argument(
        "--redis-url", help="Redis/Valkey URL for the bus and leases (env REDIS_URL)"
    )
    serve.add_argument(
        "--redis-cluster",
        action="store_true",
        default=None,
        help="Redis Cluster: use sharded pub/sub (SSUBSCRIBE/SPUBLISH)",
    )
    serve.add_argument("--workers", help="instance processes on one port (SO_REUSEPORT), ≥ 1")
    serve.add_argument("--jwt-secret", help="HS256 secret for bearer tokens (env JWT_SECRET)")
    serve.add_argument(
        "--session-ttl", help="seconds without liveness before a session stops counting"
    )
    serve.add_argument(
        "--allow-insecure-dev-secret",
        action="store_true",
        default=None,
        help="listen beyond loopback without JWT_SECRET (anyone can mint admin tokens)",
    )
    serve.add_argument(
        "--no-demo", action="store_true", help="do not load the demo world on first start"
    )

    migrate = sub.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply pending schema migrations and exit.",
    )
    _db_flags(migrate)

    seed = sub.add_parser("seed", help="load data", description="Load the demo world.")
    _db_flags(seed)
    seed.add_argument("--demo", action="store_true", required=True, help="load the demo world")
    seed.add_argument("--force", action="store_true", help="reload even if data exists")

    backends = sub.add_parser(
        "backends",
        help="run an embedded PostgreSQL and Valkey for several instances",
        description="Start an embedded PostgreSQL (data under --data-dir) and "
        "an embedded Valkey on fixed loopback ports, print their URLs, and "
        "run until Ctrl-C: what a multi-instance run on one machine shares.",
    )
    backends.add_argument("--data-dir", help="where PostgreSQL keeps data (default ./.droptv)")
    backends.add_argument("--pg-port", type=_port, default=5499)
    backends.add_argument("--redis-port", type=_port, default=6399)

    token = sub.add_parser(
        "token",
        help="print a bearer JWT for development",
        description="Mint a bearer JWT signed with JWT_SECRET (or the development secret).",
    )
    token.add_argument("--user", required=True, help="user id (the token's sub)")
    token.add_argument("--admin", action="store_true", help="add role=admin")
    token.add_argument(
        "--ttl", type=float, default=86400.0, help="lifetime in seconds (default 1 day)"
    )
    token.add_argument("--jwt-secret", help="secret (env JWT_SECRET)")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Flags (they win) over the environment; raises ConfigError naming the flag or variable."""
    keys = (
        "host",
        "port",
        "database_url",
        "redis_url",
        "redis_cluster",
        "workers",
        "jwt_secret",
        "session_ttl",
        "data_dir",
        "allow_insecure_dev_secret",
    )
    flags: dict[str, tuple[str, Any]] = {
        k: ("--" + k.replace("_", "-"), getattr(args, k))
        for k in keys
        if getattr(args, k, None) is not None
    }
    return load_settings(flags=flags, serving=args.command == "serve")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"droptv-live: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    for line in unknown_env():
        log.warning("%s", line)
    try:
        return _run(args, settings)
    except OperatorError as exc:
        print(f"droptv-live: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "token":
        print(mint_bearer(settings.jwt_secret, args.user, admin=args.admin, ttl=args.ttl))
        return 0
    if args.command == "backends":
        return run_backends(settings, pg_port=args.pg_port, redis_port=args.redis_port)
    if args.command == "migrate":
        return run_migrate(settings)
    if args.command == "seed":
        return run_seed(settings, force=args.force)
    return run_serve(settings, demo=not args.no_demo)


def now_utc() -> datetime:
    return datetime.now(UTC)


if __name__ == "__main__":
    sys.exit(main())
