"""Settings: one frozen object built from flags and environment variables at start-up."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

# Shared by every process that has no JWT_SECRET, so `droptv-live token` and several
# `serve` instances agree out of the box. Never use it in production: start-up warns loudly.
DEV_JWT_SECRET: Final = "droptv-live-development-secret-do-not-use-in-production"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything an instance needs; see the README's configuration table."""

    host: str = "0.0.0.0"
    port: int = 8080
    database_url: str | None = None
    redis_url: str | None = None
    redis_cluster: bool = False
    redis_prefix: str = "droptv"
    data_dir: Path = Path(".droptv")
    jwt_secret: str = DEV_JWT_SECRET
    stream_key: str = ""  # signs stream tokens; CDN edges verify with it. Defaults to jwt_secret.
    cdn_base_url: str = "https://cdn.droptv.com"
    session_ttl: float = 75.0  # seconds without liveness before a session stops counting
    session_max_age: float = 6 * 3600.0  # hard lifetime of a watch session
    heartbeat_interval: int = 30
    analytics_session_timeout: float = 300.0  # silence after which an analytics session times out
    max_concurrent_sessions: int = 3
    stream_token_ttl: float = 600.0
    viewer_interval: float = 1.0
    ping_interval: float = 10.0
    ws_soft_limit: int = 256 * 1024  # unsent bytes past which `viewers` messages are skipped
    ws_hard_limit: int = 1024 * 1024  # unsent bytes past which the socket is closed with 4008
    ws_max_message: int = 16 * 1024
    # Client frames per socket: `ws_message_rate` per second with bursts of `ws_message_burst`;
    # past it `error` 429, and after `ws_message_burst` refusals in a row, close 4029.
    ws_message_rate: float = 5.0
    ws_message_burst: int = 20
    max_body: int = 1024 * 1024
    # A REST request not answered within this many seconds gets 503 + Retry-After.
    request_timeout: float = 10.0
    # Bytes of request bodies that analytics ingest may hold while waiting for commits.
    analytics_max_pending_bytes: int = 64 * 1024 * 1024
    # A new connection must send its first complete request headers within this many seconds.
    header_timeout: float = 10.0
    workers: int = 1
    instance_id: str = ""
    pg_pool_min: int = 2
    pg_pool_max: int = 20
    log_level: str = "INFO"
    # "text" (human lines) or "json" (one JSON object per line, request id on request lines).
    log_format: str = "text"
    # Bearer token /metrics requires; empty: /metrics answers loopback clients only.
    metrics_token: str = ""
    # Browser origins allowed to call the REST API and open websockets (CORS), as a comma
    # list ("https://a.example,https://b.example"); empty: none (same-origin only).
    allowed_origins: str = ""
    # The RTMP ingest base shown to creators with their stream key (GET /admin/channels/{id}/ingest).
    rtmp_url: str = "rtmp://localhost:1935/live"

    @property
    def signing_key(self) -> str:
        return self.stream_key or self.jwt_secret

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `DROPTV_<FIELD>` (and the conventional DATABASE_URL, REDIS_URL, JWT_SECRET, PORT)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        aliases = {
            "database_url": "DATABASE_URL",
            "redis_url": "REDIS_URL",
            "jwt_secret": "JWT_SECRET",
            "port": "PORT",
        }
        for f in fields(cls):
            raw = env.get(f"DROPTV_{f.name.upper()}") or env.get(aliases.get(f.name, "\0"))
            if raw is None:
                continue
            values[f.name] = _coerce(f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def warn_if_insecure(self) -> None:
        if self.jwt_secret == DEV_JWT_SECRET:
            log.warning(
                "!!! JWT_SECRET is not set: using the PUBLIC development secret. "
                "Anyone can mint tokens. Set JWT_SECRET in production. !!!"
            )


def _coerce(type_name: Any, raw: str) -> Any:
    t = str(type_name)
    if t.startswith("bool"):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if t.startswith("int"):
        return int(raw)
    if t.startswith("float"):
        return float(raw)
    if t.startswith("Path"):
        return Path(raw)
    return raw


__all__ = ["DEV_JWT_SECRET", "Settings", "field"]
