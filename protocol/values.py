"""The closed sets of values on the wire, and the constrained scalars REST bodies share.

Every field whose values form a fixed set is typed by one of these: a
`StrEnum` where handlers and clients name members (`Quality.AUTO`), a
`Literal` where the server only ever writes fixed strings (session states,
end and token reasons). Both encode as the plain string, so typing a field
changes no byte of the JSON; decoding checks the value against the set.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

__all__ = [
    "DEVICE_TYPES",
    "QUALITY_VALUES",
    "ContentFilter",
    "ContentType",
    "DeviceType",
    "EntitlementKind",
    "LatencyMode",
    "Quality",
    "SessionCloseReason",
    "SessionEndReason",
    "SessionEndState",
    "SessionOverReason",
    "StreamHealth",
    "TokenReason",
]


class Quality(enum.StrEnum):
    """Playback qualities a client may ask for; `auto` is the adaptive master playlist."""

    AUTO = "auto"
    P1080 = "1080p"
    P720 = "720p"
    P480 = "480p"
    P360 = "360p"


class DeviceType(enum.StrEnum):
    """Player families of the seed; every `by_device` breakdown lists all six."""

    WEB = "web"
    IOS = "ios"
    ANDROID = "android"
    ROKU = "roku"
    FIRETV = "firetv"
    APPLETV = "appletv"


class ContentType(enum.StrEnum):
    FREE = "free"
    PREMIUM = "premium"
    PPV = "ppv"


class ContentFilter(enum.StrEnum):
    """The `type` filter of endpoint 37: a content type, or `all`."""

    ALL = "all"
    FREE = "free"
    PREMIUM = "premium"
    PPV = "ppv"


class StreamHealth(enum.StrEnum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"


class LatencyMode(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"


class EntitlementKind(enum.StrEnum):
    """What an admin can grant: following a creator, a subscription, a PPV purchase."""

    FOLLOW = "follow"
    SUBSCRIPTION = "subscription"
    PPV = "ppv"


QUALITY_VALUES: Final = tuple(q.value for q in Quality)
DEVICE_TYPES: Final = tuple(d.value for d in DeviceType)

# Why a watch session ended, as stored in watch_sessions.end_reason: DELETE watch
# ("user_exit"), a quiet session swept when its owner starts another ("timeout"), past its
# hard lifetime ("expired"), the stream went offline ("stream_offline").
SessionEndReason = Literal["user_exit", "timeout", "expired", "stream_offline"]
# Endpoint 36's `reason` for a session that is over: its stored reason, or "ended" when none
# was recorded.
SessionOverReason = SessionEndReason | Literal["ended"]
# The websocket `session` message's `reason`: as above, or "connected again" when a newer
# socket for the same session replaced this one.
SessionCloseReason = SessionOverReason | Literal["connected again"]
# The websocket `session` message's `state`.
SessionEndState = Literal["ended", "expired", "replaced"]
# Why a websocket `token` was sent: at 80 % of the old token's life, after a quality
# change, when the channel went live with a new stream, or after a signing-key rotation.
TokenReason = Literal["refresh", "quality", "stream", "rotation"]

# Identifiers: short, URL-safe, never empty.
# Ids: short and URL-safe; the same rule for bodies, queries, path parameters and sockets.
ID_PATTERN: Final = r"^[A-Za-z0-9_.\-]{1,64}$"
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
TimezoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
