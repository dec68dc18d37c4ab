"""Settings: one frozen object built from flags and environment variables at start-up."""

from __future__ import annotations

import difflib
import ipaddress
import logging
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

log = logging.getLogger(__name__)

# Shared by every process that has no JWT_SECRET, so `droptv-live token` and several
# `serve` instances agree out of the box. Never use it in production: start-up warns loudly.
DEV_JWT_SECRET: Final = "droptv-live-development-secret-do-not-use-in-production"

# The value types with their bounds: the loader checks each setting against its type, and an
# error names what is allowed (`description` where bounds alone would not say it).
Text = Annotated[str, msgspec.Meta(min_length=1)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Workers = Annotated[int, msgspec.Meta(ge=1, le=1024)]
Count = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Rate = Annotated[float, msgspec.Meta(gt=0)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
PgUrl = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^postgres(ql)?://[^\s]*$",
        description="a postgresql:// URL such as postgresql://user:password@host:5432/dbname",
    ),
]
RedisUrl = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(redis|rediss|unix)://[^\s]*$",
        description="a redis://, rediss:// or unix:// URL such as redis://host:6379/0",
    ),
]
HttpUrl = Annotated[
    str,
    msgspec.Meta(pattern=r"^https?://[^\s/]+", description="an http:// or https:// URL"),
]


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything an instance needs; see the README's configuration table."""

    # Default 127.0.0.1; the loader makes it 0.0.0.0 when a real JWT secret is set (README).
    host: Text = "127.0.0.1"
    port: Port = 8080
    database_url: PgUrl | None = None
    redis_url: RedisUrl | None = None
    redis_cluster: bool = False
    redis_prefix: Text = "droptv"
    data_dir: Path = Path(".droptv")
    jwt_secret: Text = DEV_JWT_SECRET
    stream_key: str = ""  # signs stream tokens; CDN edges verify with it. Defaults to jwt_secret.
    cdn_base_url: HttpUrl = "https://cdn.droptv.com"
    session_ttl: Seconds = 75.0  # seconds without liveness before a session stops counting
    session_max_age: Seconds = 6 * 3600.0  # hard lifetime of a watch session
    heartbeat_interval: Count = 30
    analytics_session_timeout: Seconds = 300.0  # silence after which an analytics session times out
    max_concurrent_sessions: Count = 3
    stream_token_ttl: Seconds = 600.0
    viewer_interval: Seconds = 1.0
    ping_interval: Seconds = 10.0
    ws_soft_limit: Count = 256 * 1024  # unsent bytes past which `viewers` messages are skipped
    ws_hard_limit: Count = 1024 * 1024  # unsent bytes past which the socket is closed with 4008
    ws_max_message: Count = 16 * 1024
    # Client frames per socket: `ws_message_rate` per second with bursts of `ws_message_burst`;
    # past it `error` 429, and after `ws_message_burst` refusals in a row, close 4029.
    ws_message_rate: Rate = 5.0
    ws_message_burst: Count = 20
    max_body: Count = 1024 * 1024
    # A REST request not answered within this many seconds gets 503 + Retry-After.
    request_timeout: Seconds = 10.0
    # Bytes of request bodies that analytics ingest may hold while waiting for commits.
    analytics_max_pending_bytes: Count = 64 * 1024 * 1024
    # A new connection must send its first complete request headers within this many seconds.
    header_timeout: Seconds = 10.0
    workers: Workers = 1
    instance_id: str = ""
    pg_pool_min: Annotated[int, msgspec.Meta(ge=0)] = 2
    pg_pool_max: Count = 20
    log_level: LogLevel = "INFO"
    # "text" (human lines) or "json" (one JSON object per line, request id on request lines).
    log_format: Literal["text", "json"] = "text"
    # Bearer token /metrics requires; empty: /metrics answers loopback clients only.
    metrics_token: str = ""
    # Browser origins allowed to call the REST API and open websockets (CORS), as a comma
    # list ("https://a.example,https://b.example"); empty: none (same-origin only).
    allowed_origins: str = ""
    # The RTMP ingest base shown to creators with their stream key (GET /admin/channels/{id}/ingest).
    rtmp_url: str = "rtmp://localhost:1935/live"
    # Seconds `serve` keeps retrying an unreachable DATABASE_URL at start before it gives up.
    database_wait: Seconds = 30.0
    # Listen beyond loopback although JWT_SECRET is unset (anyone can mint admin tokens then).
    allow_insecure_dev_secret: bool = False

    @property
    def signing_key(self) -> str:
        return self.stream_key or self.jwt_secret

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `DROPTV_<FIELD>` (and DATABASE_URL, REDIS_URL, JWT_SECRET, PORT); validated."""
        return load_settings(env, {k: (k, v) for k, v in overrides.items() if v is not None})

    def warn_if_insecure(self) -> None:
        if self.jwt_secret == DEV_JWT_SECRET:
            log.warning(
                "!!! JWT_SECRET is not set: using the PUBLIC development secret. "
                "Anyone can mint tokens. Set JWT_SECRET in production. !!!"
            )


class ConfigError(ValueError):
    """A setting has a value it cannot have. The message is the one line start-up prints."""


# The conventional names, read when DROPTV_<FIELD> is not set.
ENV_ALIASES: Final = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "jwt_secret": "JWT_SECRET",
    "port": "PORT",
}
# DROPTV_* variables that the tests, benchmarks and page tests read: not settings, not typos.
NOT_SETTINGS: Final = frozenset(
    {
        "DROPTV_BASE",
        "DROPTV_BENCH_CODE",
        "DROPTV_SHOTS",
        "DROPTV_STORM_WATCHERS",
        "DROPTV_TEST_PIDS",
        "DROPTV_TEST_SECRET",
        "DROPTV_TEST_URLS",
        "DROPTV_TOKEN_A",
        "DROPTV_TOKEN_B",
        "DROPTV_UPDATE_SCREENSHOTS",
    }
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_HINTS: Final[dict[str, Any]] = typing.get_type_hints(Settings, include_extras=True)

# (what the operator wrote, e.g. "--port" or "PORT"; the raw value)
Given = tuple[str, object]


def env_name(name: str) -> str:
    return f"DROPTV_{name.upper()}"


def load_settings(
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Given] | None = None,
    *,
    serving: bool = False,
) -> Settings:
    """Settings from flags (which win) and the environment, each value checked against its type.

    Raises ConfigError naming the flag or variable and what it allows. Empty values count as
    unset. With `serving`, also refuse a non-loopback host on the public development secret.
    """
    env = os.environ if env is None else env
    flags = flags or {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, tp in _HINTS.items():
        given = flags.get(name)
        if given is None or given[1] in ("", None):
            given = _from_env(env, name)
        if given is None:
            continue
        sources[name], raw = given
        values[name] = _decode(sources[name], raw, tp)
    if "host" not in values and values.get("jwt_secret", DEV_JWT_SECRET) != DEV_JWT_SECRET:
        values["host"] = "0.0.0.0"  # a real secret: listen on every interface, as servers do
    settings = Settings(**values)
    _check_together(settings, sources)
    if serving:
        check_exposure(settings, sources.get("host", "host"))
    return settings


def unknown_env(env: Mapping[str, str] | None = None) -> list[str]:
    """One warning line per DROPTV_* variable that is no setting (a typo is otherwise silent)."""
    env = os.environ if env is None else env
    known = sorted(env_name(name) for name in _HINTS)
    lines = []
    for key in sorted(env):
        if not key.startswith("DROPTV_") or key in known or key in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{key} is not a setting and is ignored{hint}")
    return lines


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, host_source: str = "host") -> None:
    """The public development secret lets anyone mint admin tokens: loopback only, unless allowed."""
    if (
        settings.jwt_secret == DEV_JWT_SECRET
        and not settings.allow_insecure_dev_secret
        and not is_loopback(settings.host)
    ):
        raise ConfigError(
            f"{host_source} {settings.host}: refusing to listen beyond loopback with the public "
            "development JWT secret (anyone could mint admin tokens); set JWT_SECRET (or "
            "--jwt-secret), or allow it with --allow-insecure-dev-secret "
            "(DROPTV_ALLOW_INSECURE_DEV_SECRET=1)"
        )


def _from_env(env: Mapping[str, str], name: str) -> Given | None:
    for key in (env_name(name), ENV_ALIASES.get(name)):
        if key is not None and env.get(key):
            return key, env[key]
    return None


def _unwrap(tp: Any) -> Any:
    """`X | None` → X: None is only ever a default, never something an operator writes."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        (tp,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    return tp


def _decode(source: str, raw: object, tp: Any) -> Any:
    tp = _unwrap(tp)
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp
    # A URL's password stays out of the message (it goes to logs and terminals).
    shown = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", raw) if isinstance(raw, str) else raw
    fail = ConfigError(f"{source}: expected {describe(tp)}, got {shown!r}")
    if isinstance(raw, str):
        if base is Path:
            return Path(raw)
        if base is bool:
            word = raw.strip().lower()
            if word not in _TRUE | _FALSE:
                raise fail
            return word in _TRUE
        if typing.get_origin(base) is Literal and raw.upper() in typing.get_args(base):
            raw = raw.upper()
        if base in (int, float):
            raw = raw.strip()
    elif base is Path and isinstance(raw, Path):
        return raw
    try:
        value = msgspec.convert(raw, tp, strict=not isinstance(raw, str))
    except msgspec.ValidationError:
        raise fail from None
    if isinstance(value, float) and not math.isfinite(value):
        raise fail
    if tp in (PgUrl, RedisUrl):
        try:
            urlsplit(value).port  # noqa: B018 - raises on a port that is no number 0-65535
        except ValueError:
            raise fail from None
    return value


def describe(tp: Any) -> str:
    """What a type allows, in words: "an integer 1–65535", "a number > 0", "one of …"."""
    tp = _unwrap(tp)
    base: Any = tp
    metas: tuple[msgspec.Meta, ...] = ()
    if typing.get_origin(tp) is Annotated:
        base, *rest = typing.get_args(tp)
        metas = tuple(m for m in rest if isinstance(m, msgspec.Meta))
    for meta in metas:
        if meta.description:
            return meta.description
    if typing.get_origin(base) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(base))
    if base is bool:
        return "a boolean (1/0, true/false, yes/no, on/off)"
    noun = {int: "an integer", float: "a number"}.get(base, "a string")
    for meta in metas:
        if meta.min_length:
            return "a non-empty string"
        if meta.ge is not None and meta.le is not None:
            return f"{noun} {meta.ge}–{meta.le}"
        if meta.ge is not None:
            return f"{noun} ≥ {meta.ge}"
        if meta.gt is not None:
            return f"{noun} > {meta.gt:g}"
    return noun


def _check_together(settings: Settings, sources: Mapping[str, str]) -> None:
    """Bounds that join two settings."""

    def src(name: str) -> str:
        return sources.get(name, env_name(name))

    if settings.ws_hard_limit < settings.ws_soft_limit:
        raise ConfigError(
            f"{src('ws_hard_limit')}: expected an integer ≥ ws_soft_limit "
            f"({settings.ws_soft_limit}), got {settings.ws_hard_limit}"
        )
    if settings.pg_pool_min > settings.pg_pool_max:
        raise ConfigError(
            f"{src('pg_pool_min')}: expected an integer ≤ pg_pool_max "
            f"({settings.pg_pool_max}), got {settings.pg_pool_min}"
        )


__all__ = ["DEV_JWT_SECRET", "ConfigError", "Settings", "field", "load_settings"]
