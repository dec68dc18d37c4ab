"""Pure parts of the REST layer: CDN URLs, the quality ladder, the EPG objects of 33 and 36."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from protocol import urls
from protocol.admin import ProgramPatch, changes
from protocol.epg import EpgCurrent, EpgNext, EpgNow, Program, epg_now, watch_epg
from protocol.errors import Unprocessable
from protocol.rest import OnDemandQuery, quality_bitrates, quality_options
from protocol.values import Quality

CDN = "https://cdn.droptv.com"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_stream_urls_match_the_seed() -> None:
    assert urls.stream_url(CDN, "stream_abc123", "auto") == (
        "https://cdn.droptv.com/streams/stream_abc123/stream.m3u8"
    )
    assert urls.stream_url(CDN, "stream_abc123", "720p") == (
        "https://cdn.droptv.com/streams/stream_abc123/720p/stream.m3u8"
    )
    assert urls.dvr_url(CDN + "/", "stream_abc123") == (
        "https://cdn.droptv.com/streams/stream_abc123/dvr.m3u8"
    )
    assert urls.thumbnail_url(CDN, "stream_abc123") == (
        "https://cdn.droptv.com/streams/stream_abc123/thumb.jpg"
    )


def test_content_urls_match_the_seed() -> None:
    assert urls.content_stream_url(CDN, "free", "ep_001") == (
        "https://cdn.droptv.com/episodes/ep_001/stream.m3u8"
    )
    assert urls.content_thumbnail_url(CDN, "premium", "prem_001") == (
        "https://cdn.droptv.com/premium/prem_001/thumb.jpg"
    )
    assert urls.content_thumbnail_url(CDN, "ppv", "ppv_001") == (
        "https://cdn.droptv.com/ppv/ppv_001/thumb.jpg"
    )
    with pytest.raises(KeyError):
        urls.content_stream_url(CDN, "bogus", "x")


def test_quality_ladder_is_the_seeds() -> None:
    assert [
        (r.quality, r.bitrate_kbps, r.resolution, r.frame_rate) for r in urls.QUALITY_LADDER
    ] == [
        ("1080p", 6000, "1920x1080", 30),
        ("720p", 3500, "1280x720", 30),
        ("480p", 1500, "854x480", 30),
        ("360p", 800, "640x360", 30),
    ]
    assert urls.rung("480p") is urls.QUALITY_LADDER[2]
    assert urls.rung("auto") is None
    options = msgspec.to_builtins(quality_options())
    assert options[0] == {"label": "Auto", "value": "auto", "description": "Adjusts automatically"}
    assert options[2] == {
        "label": "720p",
        "value": "720p",
        "bitrate_kbps": 3500,
        "resolution": "1280x720",
        "frame_rate": 30,
    }
    assert [q.label for q in quality_bitrates()] == ["1080p", "720p", "480p", "360p"]
    assert {q.value for q in Quality} == {"auto", "1080p", "720p", "480p", "360p"}


def _seed_schedule() -> list[Program]:
    # The seed's heartbeat: prog_002 16 minutes in with 29 to go, prog_003 next at 7:00 PM New York.
    start_003 = utc(2024, 11, 1, 23, 0)
    return [
        Program(
            program_id="prog_001",
            title="Morning Set",
            starts_at=start_003 - timedelta(minutes=105),
            ends_at=start_003 - timedelta(minutes=45),
        ),
        Program(
            program_id="prog_002",
            title="Behind the Laughs",
            starts_at=start_003 - timedelta(minutes=45),
            ends_at=start_003,
        ),
        Program(
            program_id="prog_003",
            title="Chris Spencer Presents",
            starts_at=start_003,
            ends_at=start_003 + timedelta(hours=1),
        ),
    ]


def test_epg_now_reproduces_the_seed() -> None:
    now = utc(2024, 11, 1, 23, 0) - timedelta(minutes=29)
    assert epg_now(_seed_schedule(), now, "America/New_York") == EpgNow(
        current_program=EpgCurrent(
            program_id="prog_002",
            title="Behind the Laughs",
            elapsed_minutes=16,
            remaining_minutes=29,
            progress_percent=35,
        ),
        next_program=EpgNext(
            program_id="prog_003",
            title="Chris Spencer Presents",
            starts_in_minutes=29,
            start_time_formatted="7:00 PM",
        ),
    )


def test_epg_now_in_gaps_and_at_the_end() -> None:
    programs = _seed_schedule()
    before = epg_now(programs, utc(2024, 11, 1, 19, 0), "UTC")
    assert before.current_program is None
    assert before.next_program is not None and before.next_program.program_id == "prog_001"
    assert before.next_program.start_time_formatted == "9:15 PM"
    after = epg_now(programs, utc(2024, 11, 2, 3, 0), "UTC")
    assert after == EpgNow(current_program=None, next_program=None)
    at_boundary = epg_now(programs, utc(2024, 11, 1, 23, 0), "UTC")
    assert at_boundary.current_program is not None
    assert at_boundary.current_program.program_id == "prog_003"
    assert at_boundary.current_program.elapsed_minutes == 0
    assert epg_now([], utc(2024, 11, 1), "UTC") == EpgNow(current_program=None, next_program=None)


def test_epg_now_refuses_unknown_zone() -> None:
    with pytest.raises(Unprocessable) as err:
        epg_now(_seed_schedule(), utc(2024, 11, 1, 22, 31), "Mars/Olympus")
    assert err.value.field == "timezone"


def test_watch_epg_is_the_local_day() -> None:
    now = utc(2024, 11, 1, 22, 31)
    programs = _seed_schedule() + [
        Program(
            program_id="tomorrow_ny",
            title="Late",
            starts_at=utc(2024, 11, 2, 4, 30),
            ends_at=utc(2024, 11, 2, 5, 0),
        ),
    ]
    ny = watch_epg(programs, now, "America/New_York")
    assert (ny.date, ny.timezone) == ("2024-11-01", "America/New_York")
    assert [e.program_id for e in ny.schedule] == ["prog_001", "prog_002", "prog_003"]
    assert [e.is_current for e in ny.schedule] == [False, True, False]
    assert ny.schedule[2].start_time_formatted == "7:00 PM"
    assert ny.schedule[2].end_time_formatted == "8:00 PM"
    assert ny.schedule[1].duration_minutes == 45
    # In UTC it is already the 1st until midnight UTC, and the 04:30 UTC program is on the 2nd.
    assert [e.program_id for e in watch_epg(programs, now, "UTC").schedule] == [
        "prog_001",
        "prog_002",
        "prog_003",
    ]
    tokyo = watch_epg(programs, now, "Asia/Tokyo")
    assert tokyo.date == "2024-11-02"
    assert "tomorrow_ny" in [e.program_id for e in tokyo.schedule]


def test_patch_changes_keep_explicit_nulls() -> None:
    patch = msgspec.json.decode(b'{"title": "New", "description": null}', type=ProgramPatch)
    assert changes(patch) == {"title": "New", "description": None}
    assert changes(ProgramPatch()) == {}


def test_ondemand_query_bounds() -> None:
    assert msgspec.convert({"page": "2", "limit": "100"}, OnDemandQuery, strict=False).limit == 100
    for bad in ({"page": "0"}, {"limit": "0"}, {"limit": "101"}, {"season": "0"}, {"type": "x"}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, OnDemandQuery, strict=False)
