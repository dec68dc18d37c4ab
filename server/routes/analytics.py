"""Placeholder: filled in by its own work item."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register this module's routes and resources on `app`."""
