"""The table of documented endpoints: one `Route` per endpoint, naming its Structs.

server/openapi.py builds /openapi.json from it; tests/test_openapi.py checks
it against the application's router, so a route added without a line here
fails a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from protocol import admin, analytics, analytics_events, analytics_summary, ingest, rest

__all__ = ["ROUTES", "Route"]


@dataclass(frozen=True, slots=True)
class Route:
    """One documented endpoint. `auth`: none | optional | required | admin.

    `errors` lists only the endpoint's own refusals (entitlement 403, 409, 429,
    a 404 for an id in the body); the answers every endpoint of its shape can
    give are added by `error_codes`.
    """

    method: str
    path: str
    summary: str
    response: type[Any] | None
    body: type[Any] | None = None
    query: type[Any] | None = None
    auth: str = "none"
    status: int = 200
    errors: tuple[int, ...] = ()
    tag: str = "live channel"
    message: bool = False  # the envelope carries a "message" (endpoint 35)


_LIVE: Final = "/creators/{creator_id}/channel"
_ADMIN_TAG: Final = "admin"
_ANALYTICS_TAG: Final = "analytics"

ROUTES: list[Route] = [
    Route(
        "GET",
        f"{_LIVE}/live",
        "28. Live channel: status, viewers, stream (live or offline)",
        rest.ChannelLive,
        auth="optional",
    ),
    Route(
        "GET",
        f"{_LIVE}/live/stream",
        "29. Playback URL and stream token",
        rest.PlaybackStream,
        query=rest.StreamQuery,
        auth="required",
        errors=(403,),
    ),
    Route(
        "GET",
        f"{_LIVE}/live/viewers",
        "30. Viewer count, by device, peaks",
        rest.ChannelViewers,
    ),
    Route(
        "GET",
        f"{_LIVE}/live/metadata",
        "31. Stream health, encoding, CDN, DRM",
        rest.StreamMetadata,
    ),
    Route(
        "GET",
        f"{_LIVE}/live/qualities",
        "32. Quality options of a session",
        rest.SessionQualities,
        query=rest.SessionQuery,
        auth="required",
        errors=(403, 409),
    ),
    Route(
        "POST",
        f"{_LIVE}/live/watch",
        "33. Start a watch session",
        rest.WatchStarted,
        body=rest.WatchRequest,
        auth="required",
        errors=(403, 429),
    ),
    Route(
        "PATCH",
        f"{_LIVE}/live/watch",
        "34. Change a session's quality",
        rest.QualityChanged,
        body=rest.QualityChange,
        auth="required",
        errors=(403, 409),
    ),
    Route(
        "DELETE",
        f"{_LIVE}/live/watch",
        "35. End a watch session (idempotent)",
        rest.SessionEnded,
        query=rest.SessionQuery,
        auth="required",
        errors=(403,),
        message=True,
    ),
    Route(
        "GET",
        f"{_LIVE}/live/heartbeat",
        "36. Keep a session alive; token, viewers, EPG",
        rest.LiveHeartbeat,
        query=rest.SessionQuery,
        auth="required",
        errors=(403,),
    ),
    Route(
        "GET",
        f"{_LIVE}/ondemand",
        "37. On-demand content, locked per entitlements",
        rest.OnDemandPage,
        query=rest.OnDemandQuery,
        auth="optional",
    ),
    Route(
        "POST",
        "/admin/creators",
        "Create a creator",
        admin.CreatorOut,
        body=admin.CreatorIn,
        auth="admin",
        status=201,
        errors=(409,),
        tag=_ADMIN_TAG,
    ),
    Route(
        "PATCH",
        "/admin/creators/{creator_id}",
        "Update a creator",
        admin.CreatorOut,
        body=admin.CreatorPatch,
        auth="admin",
        tag=_ADMIN_TAG,
    ),
    Route(
        "POST",
        "/admin/creators/{creator_id}/channel",
        "Create the creator's channel",
        admin.ChannelOut,
        body=admin.ChannelIn,
        auth="admin",
        status=201,
        errors=(409,),
        tag=_ADMIN_TAG,
    ),
    Route(
        "PATCH",
        "/admin/channels/{channel_id}",
        "Update a channel",
        admin.ChannelOut,
        body=admin.ChannelPatch,
        auth="admin",
        errors=(409,),
        tag=_ADMIN_TAG,
    ),
    Route(
        "POST",
        "/admin/channels/{channel_id}/programs",
        "Add an EPG program",
        admin.ProgramOut,
        body=admin.ProgramIn,
        auth="admin",
        status=201,
        errors=(409,),
        tag=_ADMIN_TAG,
    ),
    Route(
        "PATCH",
        "/admin/programs/{program_id}",
        "Update an EPG program",
        admin.ProgramOut,
        body=admin.ProgramPatch,
        auth="admin",
        tag=_ADMIN_TAG,
    ),
    Route(
        "DELETE",
        "/admin/programs/{program_id}",
        "Delete an EPG program",
        admin.ProgramDeleted,
        auth="admin",
        tag=_ADMIN_TAG,
    ),
    Route(
        "POST",
        "/admin/creators/{creator_id}/content",
        "Add on-demand content",
        admin.ContentOut,
        body=admin.ContentIn,
        auth="admin",
        status=201,
        errors=(409,),
        tag=_ADMIN_TAG,
    ),
    Route(
        "PATCH",
        "/admin/content/{content_id}",
        "Update on-demand content",
        admin.ContentOut,
        body=admin.ContentPatch,
        auth="admin",
        tag=_ADMIN_TAG,
    ),
    Route(
        "DELETE",
        "/admin/content/{content_id}",
        "Delete on-demand content",
        admin.ContentDeleted,
        auth="admin",
        tag=_ADMIN_TAG,
    ),
    Route(
        "POST",
        "/admin/channels/{channel_id}/live",
        "Take the channel live (new stream)",
        admin.StreamOut,
        body=admin.GoLive,
        auth="admin",
        status=201,
        errors=(409,),
        tag=_ADMIN_TAG,
    ),
    Route(
        "PATCH",
        "/admin/channels/{channel_id}/live",
        "Change the live stream (health, ...)",
        admin.StreamOut,
        body=admin.StreamPatch,
        auth="admin",
        tag=_ADMIN_TAG,
    ),
    Route(
        "DELETE",
        "/admin/channels/{channel_id}/live",
        "Take the channel offline",
        admin.StreamOut,
        auth="admin",
        tag=_ADMIN_TAG,
    ),
    Route(
        "POST",
        "/admin/channels/{channel_id}/stream-key/rotate",
        "Rotate the channel's stream signing key: every watcher gets a new token",
        admin.StreamKeyRotated,
        auth="admin",
        tag=_ADMIN_TAG,
    ),
    Route(
        "GET",
        "/admin/channels/{channel_id}/ingest",
        "The channel's secret stream key and RTMP URL (created on first read)",
        ingest.IngestInfo,
        auth="admin",
        tag=_ADMIN_TAG,
    ),
    Route(
        "POST",
        "/admin/channels/{channel_id}/ingest/rotate",
        "Rotate the stream key: the old one can no longer start a broadcast",
        ingest.IngestInfo,
        auth="admin",
        tag=_ADMIN_TAG,
    ),
    Route(
        "POST",
        "/admin/entitlements",
        "Grant a follow, subscription or PPV purchase",
        admin.EntitlementOut,
        body=admin.EntitlementIn,
        auth="admin",
        status=201,
        errors=(404,),
        tag=_ADMIN_TAG,
    ),
    # --- live analytics (51–54) and the QoE summary
    Route(
        "POST",
        "/analytics/live/session/start",
        "51. Live session started",
        analytics.SessionStartAccepted,
        body=analytics.SessionStart,
        auth="optional",
        errors=(403,),
        tag=_ANALYTICS_TAG,
    ),
    Route(
        "POST",
        "/analytics/live/session/heartbeat",
        "52. Live session heartbeat",
        analytics.AnalyticsHeartbeatAccepted,
        body=analytics.AnalyticsHeartbeat,
        auth="optional",
        errors=(403,),
        tag=_ANALYTICS_TAG,
    ),
    Route(
        "POST",
        "/analytics/live/session/end",
        "53. Live session ended",
        analytics.SessionEndAccepted,
        body=analytics.SessionEnd,
        auth="optional",
        errors=(403,),
        tag=_ANALYTICS_TAG,
    ),
    Route(
        "POST",
        "/analytics/live/events",
        "54. Live player events",
        analytics_events.EventsBatchAccepted,
        body=analytics_events.EventsBatch,
        auth="optional",
        errors=(403,),
        tag=_ANALYTICS_TAG,
    ),
    Route(
        "GET",
        "/analytics/live/streams/{stream_id}/summary",
        "Per-stream QoE summary",
        analytics_summary.StreamSummary,
        auth="required",
        errors=(403,),
        tag=_ANALYTICS_TAG,
    ),
]
