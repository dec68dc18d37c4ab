"""What REST handlers tell the real-time side: channel facts changed.

Handlers call these after their transaction commits. The default does
nothing (no websocket layer); `server.realtime` installs the real one, which
originates the matching websocket messages once across all instances.
"""

from __future__ import annotations

from typing import Protocol

from protocol.values import SessionEndReason


class ChannelEvents(Protocol):
    async def viewers_changed(self, channel_id: str) -> None: ...

    async def stream_changed(self, channel_id: str) -> None: ...

    async def schedule_changed(self, channel_id: str) -> None: ...

    async def session_ended(
        self, channel_id: str, session_id: str, reason: SessionEndReason
    ) -> None: ...

    async def session_quality_changed(self, channel_id: str, session_id: str) -> None: ...

    async def tokens_rotated(self, channel_id: str) -> None: ...


class NoEvents:
    """Used when nothing listens: every notification is dropped."""

    async def viewers_changed(self, channel_id: str) -> None:
        return None

    async def stream_changed(self, channel_id: str) -> None:
        return None

    async def schedule_changed(self, channel_id: str) -> None:
        return None

    async def session_ended(
        self, channel_id: str, session_id: str, reason: SessionEndReason
    ) -> None:
        return None

    async def session_quality_changed(self, channel_id: str, session_id: str) -> None:
        return None

    async def tokens_rotated(self, channel_id: str) -> None:
        return None
