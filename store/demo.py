"""Placeholder: the demo world, filled in by its own work item."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def load_demo(pool: asyncpg.Pool, *, now: datetime, force: bool = False) -> bool:
    """Load the demo world unless data exists (or `force`); return whether it loaded."""
    return False
