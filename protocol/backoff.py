"""The one back-off rule of every retry loop: capped exponential with jitter.

`Backoff.next()` returns how long to wait before the next attempt: `base`,
then twice the previous one, never more than `cap`, each drawn uniformly
from its upper half (so many clients that failed together do not retry
together, and no wait is shorter than half its step). `reset()` after a
success starts again from `base`. Pure: no clock, no sleeping; the loop that
owns it sleeps.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Capped exponential back-off with jitter (see the module doc)."""

    __slots__ = ("_rng", "_step", "attempts", "base", "cap")

    def __init__(self, base: float, cap: float, *, rng: random.Random | None = None) -> None:
        if not (base > 0 and cap > 0):
            raise ValueError(f"need base > 0 and cap > 0, got base={base} cap={cap}")
        self.base = min(base, cap)  # a base past the cap waits the cap every time
        self.cap = cap
        self.attempts = 0
        self._step = 0.0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The wait before the next attempt; each call doubles the step up to `cap`."""
        self._step = self.base if self.attempts == 0 else min(self.cap, self._step * 2)
        self.attempts += 1
        return self._step * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        """A success: the next failure waits `base` again."""
        self.attempts = 0
        self._step = 0.0
