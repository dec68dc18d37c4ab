"""Admin API: creators, channels, EPG programs, on-demand content, going live, entitlements.

Bodies are the msgspec types of protocol.admin (see /openapi.json); the handlers
live in server/routes/admin_channels.py (creators, channels, programs) and
server/routes/admin_media.py (content, streams, entitlements). Who may
call: a bearer with `role: admin` may do everything; a creator (bearer sub ==
creator_id) may manage their own creator record, channel, programs, content
and streams; creating creators, verifying them and granting entitlements is admin-only.
401 without a valid bearer, 403 otherwise not allowed, 404 unknown target,
409 duplicate id / channel number or channel already live, 422 naming the
field for bad input. PATCH bodies change only the fields they contain.

    POST   /admin/creators                        CreatorIn      -> 201 CreatorOut
    PATCH  /admin/creators/{creator_id}           CreatorPatch   -> CreatorOut
    POST   /admin/creators/{creator_id}/channel   ChannelIn      -> 201 ChannelOut
    PATCH  /admin/channels/{channel_id}           ChannelPatch   -> ChannelOut
    POST   /admin/channels/{channel_id}/programs  ProgramIn      -> 201 ProgramOut
    PATCH  /admin/programs/{program_id}           ProgramPatch   -> ProgramOut
    DELETE /admin/programs/{program_id}                          -> ProgramDeleted
    POST   /admin/creators/{creator_id}/content   ContentIn      -> 201 ContentOut
    PATCH  /admin/content/{content_id}            ContentPatch   -> ContentOut
    DELETE /admin/content/{content_id}                           -> ContentDeleted
    POST   /admin/channels/{channel_id}/live      GoLive         -> 201 StreamOut (409 if live)
    PATCH  /admin/channels/{channel_id}/live      StreamPatch    -> StreamOut (404 if offline)
    DELETE /admin/channels/{channel_id}/live                     -> StreamOut (404 if offline)
    POST   /admin/channels/{channel_id}/stream-key/rotate        -> StreamKeyRotated
    POST   /admin/entitlements                    EntitlementIn  -> 201 EntitlementOut

After each commit the real-time layer is told: schedule_changed for program
writes, stream_changed for go-live / offline / stream changes (offline also
viewers_changed: it ends the stream's watch sessions, reason
"stream_offline"; websockets learn it from the `stream` event).
"""

from __future__ import annotations

from aiohttp import web

from server.routes.admin_channels import (
    create_channel,
    create_creator,
    create_program,
    delete_program,
    update_channel,
    update_creator,
    update_program,
)
from server.routes.admin_media import (
    create_content,
    delete_content,
    go_live,
    go_offline,
    grant_entitlement,
    rotate_stream_key,
    update_content,
    update_stream,
)


def setup(app: web.Application) -> None:
    """Register the admin routes (see the module docstring)."""
    r = app.router
    r.add_post("/admin/creators", create_creator)
    r.add_patch("/admin/creators/{creator_id}", update_creator)
    r.add_post("/admin/creators/{creator_id}/channel", create_channel)
    r.add_patch("/admin/channels/{channel_id}", update_channel)
    r.add_post("/admin/channels/{channel_id}/programs", create_program)
    r.add_patch("/admin/programs/{program_id}", update_program)
    r.add_delete("/admin/programs/{program_id}", delete_program)
    r.add_post("/admin/creators/{creator_id}/content", create_content)
    r.add_patch("/admin/content/{content_id}", update_content)
    r.add_delete("/admin/content/{content_id}", delete_content)
    r.add_post("/admin/channels/{channel_id}/live", go_live)
    r.add_patch("/admin/channels/{channel_id}/live", update_stream)
    r.add_delete("/admin/channels/{channel_id}/live", go_offline)
    r.add_post("/admin/channels/{channel_id}/stream-key/rotate", rotate_stream_key)
    r.add_post("/admin/entitlements", grant_entitlement)
