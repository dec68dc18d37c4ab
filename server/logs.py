"""Log set-up for every process: human text lines, or one JSON object per line.

`DROPTV_LOG_FORMAT=json` is for log shippers: each record is one line holding
`ts` (ISO 8601, UTC), `level`, `logger`, `message`, `process`, the traceback
as `exc` when there is one, and any `extra` fields (the access line's
`method`, `path`, `route`, `status`, `duration_ms`). Every record logged while
a request is being served carries that request's id (`request_id`, the
`X-Request-Id` the client sees): the access middleware (server.access) sets a
context variable, and a handler filter copies it onto each record, so lines
from deep inside the store or a task the handler spawned carry it too.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

__all__ = ["FORMATS", "REQUEST_ID_VAR", "JsonFormatter", "TextFormatter", "setup_logging"]

FORMATS: Final = ("text", "json")
# The id of the request the current task serves (tasks it spawns inherit it).
REQUEST_ID_VAR: Final[ContextVar[str | None]] = ContextVar("droptv_request_id", default=None)

_TEXT: Final = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
# LogRecord attributes that are not `extra` fields.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
}
_json: Final = msgspec.json.Encoder()


class RequestIdFilter(logging.Filter):
    """Stamps `request_id` (None outside a request) on every record the handler sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID_VAR.get()
        return True


class TextFormatter(logging.Formatter):
    """The classic line, with ` [request <id>]` appended inside a request."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request {rid}]" if rid else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record; a multi-line message or traceback stays inside one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
        }
        rid = getattr(record, "request_id", None)
        if rid:
            doc["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value if isinstance(value, (str, int, float, bool)) else repr(value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return _json.encode(doc).decode()


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Replace the root handlers with one stderr handler in `fmt` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
