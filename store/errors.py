"""Store-layer errors: driver exceptions are wrapped here, at the edge, and nowhere else."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """PostgreSQL or Redis cannot be reached right now; the request may be retried."""
