"""Websocket protocol v1 (`droptv.live.v1`): every frame is one JSON object tagged by `type`.

Server messages all carry the channel's `epoch`, `seq` and `ts`:

- `seq` rises by one per *channel event* (`viewers`, `epg`, `stream`) and is
  the same on every instance. Per-session messages (`hello`, `token`,
  `session`, `error`) do not consume a seq: they carry the channel's latest
  seq, so a gap in `seq` always means a channel event was not delivered.
- `epoch` changes when the sequence source restarts (Redis lost its state);
  seqs of different epochs are not comparable.
- `ts` is the origin time (unix seconds) of the event: where a REST request,
  a timer or a count change produced it, not when this socket got it.

A client tracks (epoch, last seq seen). The server never sends a socket a
channel event its last `hello` already includes (seq <= the hello's seq). On
a gap or an epoch change the client sends `resume` {epoch, last_seq}: the
server answers with a fresh `hello` unless epoch and last_seq are exactly its
latest position for the channel, in which case nothing is sent. `viewers` is
a latest-value message: a slow socket may be skipped one (a gap that the next
`viewers` or a `hello` after `resume` repairs). The server also sends a fresh
`hello` on its own after it lost and regained the bus (Redis restart).

Schema evolution: new fields get defaults; clients ignore unknown fields and
unknown `type`s. Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Final

import msgspec

from protocol.codec import decode
from protocol.epg import EpgCurrent, EpgNext, EpgNow
from protocol.format import compact_count
from protocol.limits import INT64_MAX, FiniteNonNegative, NonNegative
from protocol.values import (
    LatencyMode,
    Quality,
    SessionCloseReason,
    SessionEndState,
    StreamHealth,
    TokenReason,
)

__all__ = [
    "PROTOCOL",
    "ClientMessage",
    "Epg",
    "Error",
    "Hello",
    "HelloSession",
    "HelloStream",
    "Playback",
    "PlayerState",
    "QualityRequest",
    "Resume",
    "ServerMessage",
    "SessionState",
    "StreamStatus",
    "Token",
    "TokenInfo",
    "ViewerNumbers",
    "Viewers",
    "decode_client",
    "encode_server",
    "epg_message",
    "viewer_numbers",
    "viewers_message",
]

PROTOCOL: Final = "droptv.live.v1"

# Types whose newest value supersedes every older one: a consumer that falls
# behind may skip them (the next one carries the whole state).
LATEST_VALUE_TYPES: Final = frozenset({"viewers"})
# Types that consume a channel seq (and reach every watcher of the channel).
CHANNEL_EVENT_TYPES: Final = frozenset({"viewers", "epg", "stream"})


class _Server(msgspec.Struct, kw_only=True, frozen=True, tag_field="type"):
    epoch: str
    seq: int
    ts: float


# --- pieces --------------------------------------------------------------------------------


class HelloSession(msgspec.Struct, kw_only=True, frozen=True):
    """`device_type` is a DeviceType value and `quality` a Quality value (typed str: the
    server's per-socket state holds them as interned strings)."""

    session_id: str
    started_at: datetime
    expires_at: datetime
    device_type: str
    quality: str
    timezone: str


class HelloStream(msgspec.Struct, kw_only=True, frozen=True):
    stream_id: str
    is_live: bool
    health: StreamHealth
    title: str
    started_at: datetime
    latency_mode: LatencyMode


class ViewerNumbers(msgspec.Struct, kw_only=True, frozen=True):
    """`delta`: change since the previous `viewers` event of the channel (0 in a `hello`)."""

    watching_now: int
    watching_now_formatted: str
    delta: int
    peak_today: int
    peak_today_formatted: str


class TokenInfo(msgspec.Struct, kw_only=True, frozen=True):
    token: str
    token_expires_at: datetime
    stream_url: str
    quality: str


# --- server -> client ----------------------------------------------------------------------


class Hello(_Server, tag="hello", kw_only=True, frozen=True):
    """The full snapshot: on connect, on `resume` after a gap, after a bus reconnect.

    `stream` and `token` are null while the channel is offline. Channel events
    with seq <= this `seq` are already reflected here.
    """

    session: HelloSession
    stream: HelloStream | None
    viewers: ViewerNumbers
    epg: EpgNow
    token: TokenInfo | None
    ping_interval: float


class Viewers(_Server, tag="viewers", kw_only=True, frozen=True):
    """The channel's count changed (at most one per viewer_interval). Latest-value: may be skipped."""

    watching_now: int
    watching_now_formatted: str
    delta: int
    peak_today: int
    peak_today_formatted: str


class Epg(_Server, tag="epg", kw_only=True, frozen=True):
    """A program boundary passed or the schedule changed; as endpoint 36's `epg` object."""

    current_program: EpgCurrent | None
    next_program: EpgNext | None


class StreamStatus(_Server, tag="stream", kw_only=True, frozen=True):
    """Go-live, offline or a health/title change. Offline: `is_live` false, other fields null."""

    stream_id: str | None
    is_live: bool
    health: StreamHealth | None
    title: str | None


class Token(_Server, tag="token", kw_only=True, frozen=True):
    """A new stream token for this session: at 80 % of the old one's life (`reason` "refresh"),
    after a quality change ("quality"), when the channel went live with a new stream
    ("stream") or after the channel's signing key rotated ("rotation"). `quality` is a
    Quality value."""

    token: str
    token_expires_at: datetime
    stream_url: str
    quality: str
    reason: TokenReason


class SessionState(_Server, tag="session", kw_only=True, frozen=True):
    """This session is over; the server closes the socket with 4009.

    `state`: "ended" (DELETE watch, stream offline, swept; `reason` says which, "ended" when
    no reason was recorded), "expired" (past its hard lifetime) or "replaced" (the same
    session connected again elsewhere; `reason` "connected again").
    """

    session_id: str
    state: SessionEndState
    reason: SessionCloseReason


class Error(_Server, tag="error", kw_only=True, frozen=True):
    """A client message was refused; the socket stays open. `code` as the REST envelope's."""

    code: int
    message: str
    field: str | None = None


ServerMessage = Hello | Viewers | Epg | StreamStatus | Token | SessionState | Error


# --- client -> server ----------------------------------------------------------------------


class _Client(msgspec.Struct, kw_only=True, frozen=True, tag_field="type"):
    pass


class QualityRequest(_Client, tag="quality", kw_only=True, frozen=True):
    """Same effect as PATCH 34; answered by `token` (reason "quality")."""

    quality: Quality


class Resume(_Client, tag="resume", kw_only=True, frozen=True):
    """The client's position; answered by `hello` unless it is exactly up to date."""

    epoch: Annotated[str, msgspec.Meta(max_length=64)]
    last_seq: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]


class PlayerState(enum.StrEnum):
    PLAYING = "playing"
    PAUSED = "paused"
    BUFFERING = "buffering"
    STOPPED = "stopped"


class Playback(_Client, tag="playback", kw_only=True, frozen=True):
    """Optional player telemetry; accepted and counted, not answered."""

    state: PlayerState
    position_seconds: FiniteNonNegative | None = None
    bitrate_kbps: NonNegative | None = None
    buffer_seconds: FiniteNonNegative | None = None


ClientMessage = QualityRequest | Resume | Playback

_encoder: Final = msgspec.json.Encoder()


def encode_server(msg: ServerMessage) -> bytes:
    """The exact JSON text of a server frame (UTF-8)."""
    return _encoder.encode(msg)


def decode_client(data: bytes | str) -> ClientMessage:
    """Parse one client frame; raises BadRequest (not JSON) or Unprocessable naming the field."""
    return decode(data, ClientMessage)  # type: ignore[arg-type]


def viewer_numbers(watching_now: int, delta: int, peak_today: int) -> ViewerNumbers:
    """The `viewers` fields with their display forms ("13.2K")."""
    return ViewerNumbers(
        watching_now=watching_now,
        watching_now_formatted=compact_count(watching_now),
        delta=delta,
        peak_today=peak_today,
        peak_today_formatted=compact_count(peak_today),
    )


def epg_message(epoch: str, seq: int, ts: float, epg: EpgNow) -> Epg:
    return Epg(
        epoch=epoch,
        seq=seq,
        ts=ts,
        current_program=epg.current_program,
        next_program=epg.next_program,
    )


def viewers_message(epoch: str, seq: int, ts: float, numbers: ViewerNumbers) -> Viewers:
    return Viewers(epoch=epoch, seq=seq, ts=ts, **msgspec.structs.asdict(numbers))
