"""The websocket message types, the bus envelope and the frame bytes: pure, no I/O."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from protocol import bus
from protocol.epg import EpgNow, Program, epg_now
from protocol.errors import BadRequest, Unprocessable
from protocol.messages import (
    Epg,
    Error,
    Hello,
    HelloSession,
    Playback,
    QualityRequest,
    Resume,
    SessionState,
    StreamStatus,
    Token,
    decode_client,
    encode_server,
    viewer_numbers,
    viewers_message,
)
from protocol.values import Quality
from server.frames import text_frame

NOW = datetime(2024, 11, 1, 18, 31, tzinfo=UTC)


def _all_server_messages() -> list[msgspec.Struct]:
    pos = {"epoch": "e1", "seq": 7, "ts": 1730485860.5}
    epg = epg_now(
        [
            Program(
                program_id="p1",
                title="A",
                starts_at=NOW - timedelta(minutes=16),
                ends_at=NOW + timedelta(minutes=29),
            ),
            Program(
                program_id="p2",
                title="B",
                starts_at=NOW + timedelta(minutes=29),
                ends_at=NOW + timedelta(minutes=89),
            ),
        ],
        NOW,
        "America/New_York",
    )
    return [
        Hello(
            **pos,
            session=HelloSession(
                session_id="s",
                started_at=NOW,
                expires_at=NOW,
                device_type="web",
                quality="auto",
                timezone="UTC",
            ),
            stream=None,
            viewers=viewer_numbers(13245, 0, 18500),
            epg=epg,
            token=None,
            ping_interval=10.0,
        ),
        viewers_message("e1", 7, 1.0, viewer_numbers(13245, 245, 18500)),
        Epg(**pos, current_program=epg.current_program, next_program=epg.next_program),
        StreamStatus(**pos, stream_id="stream_abc123", is_live=True, health="good", title="T"),
        Token(
            **pos, token="t", token_expires_at=NOW, stream_url="u", quality="720p", reason="refresh"
        ),
        SessionState(**pos, session_id="s", state="ended", reason="user_exit"),
        Error(**pos, code=422, message="bad", field="quality"),
    ]


@pytest.mark.parametrize("msg", _all_server_messages(), ids=lambda m: type(m).__name__)
def test_every_server_message_is_tagged_and_positioned(msg: msgspec.Struct) -> None:
    data = json.loads(encode_server(msg))  # type: ignore[arg-type]
    assert list(data)[:4] == ["type", "epoch", "seq", "ts"]
    assert (data["epoch"], data["seq"]) == ("e1", 7)


def test_viewers_carry_display_forms() -> None:
    data = json.loads(
        encode_server(viewers_message("e", 3, 1.5, viewer_numbers(13245, 245, 18500)))
    )
    assert data == {
        "type": "viewers",
        "epoch": "e",
        "seq": 3,
        "ts": 1.5,
        "watching_now": 13245,
        "watching_now_formatted": "13.2K",
        "delta": 245,
        "peak_today": 18500,
        "peak_today_formatted": "18.5K",
    }


def test_epg_message_matches_endpoint_36() -> None:
    msg = _all_server_messages()[2]
    data = json.loads(encode_server(msg))  # type: ignore[arg-type]
    assert data["current_program"] == {
        "program_id": "p1",
        "title": "A",
        "elapsed_minutes": 16,
        "remaining_minutes": 29,
        "progress_percent": 35,
    }
    assert data["next_program"] == {
        "program_id": "p2",
        "title": "B",
        "starts_in_minutes": 29,
        "start_time_formatted": "3:00 PM",
    }


def test_client_messages_decode_by_type() -> None:
    assert decode_client('{"type":"quality","quality":"720p"}') == QualityRequest(
        quality=Quality.P720
    )
    assert decode_client(b'{"type":"resume","epoch":"e","last_seq":3}') == Resume(
        epoch="e", last_seq=3
    )
    assert decode_client('{"type":"playback","state":"paused","future_field":1}') == Playback(
        state="paused"
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame", "error", "field"),
    [
        ("{nope", BadRequest, "body"),
        ('{"type":"dance"}', Unprocessable, "type"),
        ('{"quality":"720p"}', Unprocessable, "type"),
        ('{"type":"quality","quality":"8k"}', Unprocessable, "quality"),
        ('{"type":"resume","epoch":"e","last_seq":-1}', Unprocessable, "last_seq"),
        ('{"type":"resume","last_seq":1}', Unprocessable, "epoch"),
        ('{"type":"playback","state":"flying"}', Unprocessable, "state"),
        ("[1,2]", Unprocessable, None),
    ],
)
def test_bad_client_messages_name_the_field(
    frame: str, error: type[Exception], field: str | None
) -> None:
    with pytest.raises(error) as info:
        decode_client(frame)
    assert getattr(info.value, "field", None) == field


def test_bus_envelope_round_trips_any_payload() -> None:
    env = bus.Envelope(
        channel="ch_1",
        kind=bus.Kind.BROADCAST,
        type="viewers",
        epoch="e",
        seq=9,
        instance_id="i-1",
        ts=12.25,
    )
    payload = b'{"a":"x\\ny"}\n\x00\xff'
    packed = bus.pack(env, payload)
    assert bus.unpack(packed) == (env, payload)
    targeted = bus.Envelope(
        channel="ch_1",
        kind=bus.Kind.SESSION_ENDED,
        type="session_ended",
        epoch="",
        seq=0,
        instance_id="i",
        ts=1.0,
        target="sess_1",
    )
    assert bus.unpack(bus.pack(targeted, b""))[0].target == "sess_1"


@pytest.mark.parametrize("data", [b"no separator", b'["x"]\n', b"{}\n", b"\n"])
def test_malformed_bus_messages_are_rejected(data: bytes) -> None:
    with pytest.raises(bus.MalformedBusMessage):
        bus.unpack(data)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frame_is_a_valid_unmasked_server_frame(size: int) -> None:
    payload = b"x" * size
    frame = text_frame(payload)
    assert frame[0] == 0x81 and not frame[1] & 0x80
    n = frame[1] & 0x7F
    if size < 126:
        assert n == size and frame[2:] == payload
    elif size < 65536:
        assert n == 126 and struct.unpack("!H", frame[2:4])[0] == size and frame[4:] == payload
    else:
        assert n == 127 and struct.unpack("!Q", frame[2:10])[0] == size and frame[10:] == payload


def test_hello_epg_defaults_are_empty_in_a_gap() -> None:
    empty = epg_now([], NOW, "UTC")
    assert empty == EpgNow(current_program=None, next_program=None)
