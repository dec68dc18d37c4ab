"""Live analytics events batch (endpoint 54), judged event by event.

`events` is decoded as raw values and `judge_events` sorts them into accepted
events and `RejectedEvent(event_id, reason)`. Only whole-request problems
(bad JSON, missing session_id, more than `MAX_EVENTS_PER_BATCH` events) fail
the request. Within one batch the *first* occurrence of an event_id is the
one judged; every later occurrence is rejected with `REJECT_DUPLICATE`.

Pure: no I/O and no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from protocol.analytics import MAX_ID_LENGTH, Id, IngestBody
from protocol.format import parse_iso_utc

__all__ = [
    "EVENT_TYPES",
    "MAX_EVENTS_PER_BATCH",
    "MAX_METADATA_BYTES",
    "EventType",
    "EventsBatch",
    "EventsBatchAccepted",
    "JudgedEvents",
    "LiveEvent",
    "RejectReason",
    "RejectedEvent",
    "judge_events",
]

MAX_EVENTS_PER_BATCH: Final = 500
MAX_METADATA_BYTES: Final = 4096  # encoded JSON of one event's metadata

EventType = Literal[
    "stream_start",
    "stream_buffer_start",
    "stream_buffer_end",
    "stream_reconnect",
    "stream_reconnect_success",
    "stream_error",
    "program_change",
    "quality_change",
    "fullscreen_enter",
    "fullscreen_exit",
    "mute",
    "unmute",
    "dvr_seek",
    "dvr_resume_live",
    "reaction",
    "share",
    "follow",
    "subscribe",
    "tip",
]
EVENT_TYPES: Final[frozenset[str]] = frozenset(get_args(EventType))

# Reasons in `rejected_events`: fixed strings, so players can switch on them.
REJECT_NOT_OBJECT: Final = "event must be an object"
REJECT_MISSING_ID: Final = "missing event_id"
REJECT_INVALID_ID: Final = "invalid event_id"
REJECT_DUPLICATE: Final = "duplicate event_id in batch"
REJECT_MISSING_TYPE: Final = "missing event_type"
REJECT_UNKNOWN_TYPE: Final = "unknown event_type"
REJECT_MISSING_TIMESTAMP: Final = "missing timestamp"
REJECT_INVALID_TIMESTAMP: Final = "invalid timestamp"
REJECT_METADATA: Final = "metadata must be an object"
REJECT_METADATA_SIZE: Final = "metadata too large"
RejectReason = Literal[
    "event must be an object",
    "missing event_id",
    "invalid event_id",
    "duplicate event_id in batch",
    "missing event_type",
    "unknown event_type",
    "missing timestamp",
    "invalid timestamp",
    "metadata must be an object",
    "metadata too large",
]


class EventsBatch(IngestBody, kw_only=True, frozen=True):
    device_id: Id
    stream_id: Id
    channel_id: Id | None = None
    creator_id: Id
    # Raw values: each event is judged on its own by `judge_events`.
    events: Annotated[list[msgspec.Raw], msgspec.Meta(max_length=MAX_EVENTS_PER_BATCH)]


class LiveEvent(msgspec.Struct, kw_only=True, frozen=True):
    """An event that passed judgement; `metadata_json` is the object re-encoded, or None."""

    event_id: str
    event_type: str
    timestamp: str
    at: datetime
    metadata_json: str | None


class RejectedEvent(msgspec.Struct, kw_only=True, frozen=True):
    """`reason` is one of the fixed REJECT_* strings, so players can switch on it."""

    event_id: str | None
    reason: RejectReason


class JudgedEvents(msgspec.Struct, kw_only=True, frozen=True):
    accepted: list[LiveEvent]
    rejected: list[RejectedEvent]


class EventsBatchAccepted(msgspec.Struct, kw_only=True, frozen=True):
    session_id: str
    accepted_count: int
    rejected_count: int
    rejected_events: list[RejectedEvent]
    server_timestamp: str


_metadata_encoder: Final = msgspec.json.Encoder()


def _judge(value: Any, event_id: str) -> LiveEvent | RejectReason:
    """The event, or the reason it is rejected; checks in a fixed order: type, timestamp, metadata."""
    event_type = value.get("event_type")
    if event_type is None:
        return REJECT_MISSING_TYPE
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        return REJECT_UNKNOWN_TYPE
    stamp = value.get("timestamp")
    if stamp is None:
        return REJECT_MISSING_TIMESTAMP
    if not isinstance(stamp, str) or len(stamp) > 64:
        return REJECT_INVALID_TIMESTAMP
    try:
        at = parse_iso_utc(stamp)
    except ValueError:
        return REJECT_INVALID_TIMESTAMP
    metadata = value.get("metadata")
    metadata_json = None
    if metadata is not None:
        if not isinstance(metadata, dict):
            return REJECT_METADATA
        encoded = _metadata_encoder.encode(metadata)
        if len(encoded) > MAX_METADATA_BYTES:
            return REJECT_METADATA_SIZE
        metadata_json = encoded.decode()
    return LiveEvent(
        event_id=event_id,
        event_type=event_type,
        timestamp=stamp,
        at=at,
        metadata_json=metadata_json,
    )


def judge_events(raws: Sequence[msgspec.Raw]) -> JudgedEvents:
    """Split a batch into accepted events and `RejectedEvent`s, keeping the batch order.

    `event_id` is checked first, so a rejection names the event whenever the
    event carries a usable id (null otherwise). The first occurrence of an id
    is judged; later ones are rejected as duplicates whatever their content.
    """
    accepted: list[LiveEvent] = []
    rejected: list[RejectedEvent] = []
    seen: set[str] = set()
    for raw in raws:
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            rejected.append(RejectedEvent(event_id=None, reason=REJECT_NOT_OBJECT))
            continue
        if not isinstance(value, dict):
            rejected.append(RejectedEvent(event_id=None, reason=REJECT_NOT_OBJECT))
            continue
        event_id = value.get("event_id")
        if event_id is None:
            rejected.append(RejectedEvent(event_id=None, reason=REJECT_MISSING_ID))
            continue
        if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_ID_LENGTH:
            rejected.append(RejectedEvent(event_id=None, reason=REJECT_INVALID_ID))
            continue
        if event_id in seen:
            rejected.append(RejectedEvent(event_id=event_id, reason=REJECT_DUPLICATE))
            continue
        seen.add(event_id)
        verdict = _judge(value, event_id)
        if isinstance(verdict, str):
            rejected.append(RejectedEvent(event_id=event_id, reason=verdict))
        else:
            accepted.append(verdict)
    return JudgedEvents(accepted=accepted, rejected=rejected)
