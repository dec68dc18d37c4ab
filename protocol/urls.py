"""CDN addresses and the quality ladder: pure functions of the CDN base and an id.

Nothing here is stored: URLs are derived from `cdn_base` (Settings.cdn_base_url)
so a CDN move is a configuration change, not a data migration. Layout (seed):

- live:      {cdn}/streams/{stream_id}/stream.m3u8, /{quality}/stream.m3u8, /dvr.m3u8, /thumb.jpg
- on demand: {cdn}/{folder}/{content_id}/stream.m3u8 and /thumb.jpg, where folder
  is "episodes" for free content, "premium" and "ppv" for the others.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "CONTENT_FOLDER",
    "QUALITY_LADDER",
    "Rung",
    "content_stream_url",
    "content_thumbnail_url",
    "dvr_url",
    "rung",
    "stream_url",
    "thumbnail_url",
]


class Rung(msgspec.Struct, kw_only=True, frozen=True):
    """One fixed rendition of the adaptive ladder."""

    quality: str
    bitrate_kbps: int
    resolution: str
    frame_rate: int


# Highest first, as the seed lists them (endpoint 32).
QUALITY_LADDER: Final[tuple[Rung, ...]] = (
    Rung(quality="1080p", bitrate_kbps=6000, resolution="1920x1080", frame_rate=30),
    Rung(quality="720p", bitrate_kbps=3500, resolution="1280x720", frame_rate=30),
    Rung(quality="480p", bitrate_kbps=1500, resolution="854x480", frame_rate=30),
    Rung(quality="360p", bitrate_kbps=800, resolution="640x360", frame_rate=30),
)

CONTENT_FOLDER: Final[dict[str, str]] = {"free": "episodes", "premium": "premium", "ppv": "ppv"}


def rung(quality: str) -> Rung | None:
    """The ladder rung of a fixed quality; None for "auto" or an unknown label."""
    return next((r for r in QUALITY_LADDER if r.quality == quality), None)


def _base(cdn_base: str) -> str:
    return cdn_base.rstrip("/")


def stream_url(cdn_base: str, stream_id: str, quality: str) -> str:
    """The HLS playlist: the adaptive master for "auto", else the fixed rendition's playlist."""
    if quality == "auto":
        return f"{_base(cdn_base)}/streams/{stream_id}/stream.m3u8"
    return f"{_base(cdn_base)}/streams/{stream_id}/{quality}/stream.m3u8"


def dvr_url(cdn_base: str, stream_id: str) -> str:
    """The rewindable (DVR window) playlist of a live stream."""
    return f"{_base(cdn_base)}/streams/{stream_id}/dvr.m3u8"


def thumbnail_url(cdn_base: str, stream_id: str) -> str:
    return f"{_base(cdn_base)}/streams/{stream_id}/thumb.jpg"


def content_stream_url(cdn_base: str, content_type: str, content_id: str) -> str:
    """Playlist of an on-demand item; raises KeyError for a type outside free/premium/ppv."""
    return f"{_base(cdn_base)}/{CONTENT_FOLDER[content_type]}/{content_id}/stream.m3u8"


def content_thumbnail_url(cdn_base: str, content_type: str, content_id: str) -> str:
    return f"{_base(cdn_base)}/{CONTENT_FOLDER[content_type]}/{content_id}/thumb.jpg"
