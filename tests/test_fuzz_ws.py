"""Property-based fuzzing of websocket client frames against a real `droptv-live serve` process.

A client may send anything: JSON of any shape, deep nesting, wrong types,
unknown `type` tags, huge integers, NUL characters, text that is not JSON,
binary frames. The protocol's promise (README, protocol.errors.CloseCode) is
that a bad frame is answered with an `error` frame and the socket stays
open; only a frame over the size limit closes it, with 1009. Never 1011.

Hypothesis generates the frames in a worker thread; each example is sent on
the test's event loop, followed by a marker frame whose `error` proves the
server read past it with the socket intact. The message budget is raised for
this server, so the fuzzer measures decoding, not the rate limit.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import aiohttp
import asyncpg
import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st

from protocol.errors import CloseCode
from tests.conftest import ServerFactory, ServerProcess
from tests.wsutil import Watcher, start_watch

EXAMPLES: Final = 400
BUDGET_SECONDS: Final = 40.0
ANSWER_TIMEOUT: Final = 5.0
# A frame may be answered by these besides `error` (a valid `quality` gets a `token`, a
# `resume` a `hello`), and the server pushes the rest whenever it likes.
ANSWERS: Final = {"error", "token", "hello", "viewers", "epg", "stream"}
# The close codes a frame may legitimately cause (documented in protocol.errors.CloseCode).
FRAME_CLOSES: Final = {CloseCode.TOO_BIG}
ENV: Final = {"DROPTV_WS_MESSAGE_RATE": "100000", "DROPTV_WS_MESSAGE_BURST": "100000"}
MAX_FRAME: Final = 16 * 1024  # Settings.ws_max_message

HUGE_INTS: Final = (
    st.sampled_from([2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400])
    | st.integers()
)
NASTY_TEXT: Final = st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "\u202e", "", "x" * 3000]
) | st.text(max_size=50)
SCALARS: Final = st.none() | st.booleans() | HUGE_INTS | st.floats(allow_nan=False) | NASTY_TEXT
JSON_VALUES: Final = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NASTY_TEXT, inner, max_size=4),
    max_leaves=12,
)
TAGS: Final = st.sampled_from(["quality", "resume", "playback"]) | NASTY_TEXT | SCALARS
FIELDS: Final = st.sampled_from(
    ["quality", "epoch", "last_seq", "state", "position_seconds", "bitrate_kbps", "type"]
)


def _deep(depth: int, opener: str, closer: str, tag: str) -> str:
    """`depth` levels of nesting under an extra field of an otherwise valid message."""
    return f'{{"type":"{tag}","quality":"480p","x":' + opener * depth + closer * depth + "}"


def _huge_int_text(digits: int) -> str:
    return '{"type":"resume","epoch":"e","last_seq":' + "9" * digits + "}"


TAGGED: Final = st.builds(
    lambda tag, extra: json.dumps({"type": tag, **extra}),
    TAGS,
    st.dictionaries(FIELDS | NASTY_TEXT, JSON_VALUES, max_size=5),
)
FRAMES: Final = st.one_of(
    JSON_VALUES.map(json.dumps),
    TAGGED,
    st.builds(
        lambda depth, obj, tag: _deep(depth, '{"a":' if obj else "[", "}" if obj else "]", tag),
        st.integers(1, 2500),
        st.booleans(),
        st.sampled_from(["quality", "playback", "resume", "nope"]),
    ),
    st.integers(1, 8000).map(_huge_int_text),
    st.text(max_size=200),
    st.binary(max_size=200),
)


@dataclass
class Fuzz:
    """One watcher's socket, reopened on a fresh session whenever a frame closed it."""

    server: ServerProcess
    http: aiohttp.ClientSession
    watcher: Watcher
    marker: int = 0
    frames: int = 0
    findings: list[str] = field(default_factory=list)
    sockets: list[Watcher] = field(default_factory=list)

    async def reopen(self) -> None:
        """A new user each time: a closed socket's session may still count against the limit."""
        user = f"fuzz_user_{len(self.sockets)}"
        sid = await start_watch(self.http, self.server.url, user)
        self.watcher = await Watcher.connect(self.http, self.server.ws_url, sid, user)
        self.sockets.append(self.watcher)
        await self.watcher.next("hello")

    async def probe(self, frame: str | bytes) -> None:
        """Send `frame` and a marker; every answer up to the marker's error must be allowed."""
        w = self.watcher
        self.frames += 1
        self.marker += 1
        marker = f"fuzz_marker_{self.marker}"
        seen = len(w.messages)
        try:
            if isinstance(frame, bytes):
                await w.ws.send_bytes(frame)
            else:
                await w.ws.send_str(frame)
            if len(frame if isinstance(frame, bytes) else frame.encode()) <= MAX_FRAME:
                await w.send({"type": "quality", "quality": marker})
            await w.next("error", ANSWER_TIMEOUT, where=lambda m: marker in m.get("message", ""))
        except TimeoutError:
            pass  # silent: judged below
        except (AssertionError, aiohttp.ClientError, ConnectionError):
            # Closed under us: let the reader see the close frame, whose code tells why.
            await asyncio.gather(w.wait_closed(ANSWER_TIMEOUT), return_exceptions=True)
        odd = [m for m in w.messages[seen:] if m.get("type") not in ANSWERS]
        bad_errors = [
            m
            for m in w.messages[seen:]
            if m.get("type") == "error"
            and not (isinstance(m.get("code"), int) and 400 <= m["code"] < 500 and m["message"])
        ]
        answered = any(marker in m.get("message", "") for m in w.of_type("error"))
        if w.closed:
            code = w.close_code
            if code not in FRAME_CLOSES:
                self.findings.append(f"closed {code} after {_show(frame)}")
            await self.reopen()
        elif not answered:
            self.findings.append(f"no answer within {ANSWER_TIMEOUT} s after {_show(frame)}")
            await self.reopen()
        if odd or bad_errors:
            self.findings.append(f"unexpected answers {odd + bad_errors} to {_show(frame)}")


def _show(frame: str | bytes, limit: int = 300) -> str:
    text = repr(frame)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(frame)} chars)"


def run_examples(fuzz: Fuzz, loop: asyncio.AbstractEventLoop) -> None:
    """Drive Hypothesis from a worker thread; each example runs on the test's loop."""
    deadline = time.monotonic() + BUDGET_SECONDS

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(frame=FRAMES)
    def example(frame: str | bytes) -> None:
        if time.monotonic() < deadline:
            asyncio.run_coroutine_threadsafe(fuzz.probe(frame), loop).result(ANSWER_TIMEOUT * 3)

    example()


@pytest.fixture
async def fuzz(start_server: ServerFactory, demo_db: asyncpg.Pool) -> AsyncIterator[Fuzz]:
    server = await start_server(env=ENV)
    async with aiohttp.ClientSession() as http:
        sid = await start_watch(http, server.url)
        watcher = await Watcher.connect(http, server.ws_url, sid)
        await watcher.next("hello")
        state = Fuzz(server, http, watcher, sockets=[watcher])
        yield state
        for w in state.sockets:
            await w.close()


@pytest.mark.timeout(90)
async def test_any_client_frame_gets_an_error_and_the_socket_stays(fuzz: Fuzz) -> None:
    """Garbage frames are answered `error` (or closed 1009 when oversize), never 1011."""
    await asyncio.to_thread(run_examples, fuzz, asyncio.get_running_loop())
    assert fuzz.frames >= 50, f"only {fuzz.frames} frames sent"
    assert not fuzz.findings, (
        "\n".join(sorted(fuzz.findings, key=len)[:30]) + "\n\n" + fuzz.server.log()[-3000:]
    )
    w = fuzz.watcher
    await w.send({"type": "quality", "quality": "480p"})
    token = await w.next("token", where=lambda m: m.get("quality") == "480p")
    assert token["reason"] == "quality"
    assert not w.closed


async def test_oversize_frame_closes_1009_and_a_new_socket_works(fuzz: Fuzz) -> None:
    """The one frame that may close the socket: past ws_max_message, with the documented 1009."""
    await fuzz.watcher.ws.send_str(json.dumps({"type": "playback", "pad": "x" * MAX_FRAME}))
    assert await fuzz.watcher.wait_closed() == CloseCode.TOO_BIG
    await fuzz.reopen()
    await fuzz.watcher.send({"type": "quality", "quality": "720p"})
    assert (await fuzz.watcher.next("token"))["quality"] == "720p"
