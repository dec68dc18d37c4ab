"""The one back-off rule: doubling from base to cap, each wait in the upper half of its step."""

from __future__ import annotations

import random

import pytest

from protocol.backoff import Backoff


def test_waits_double_up_to_the_cap_and_reset() -> None:
    b = Backoff(0.5, 4.0, rng=random.Random(7))
    steps = [0.5, 1.0, 2.0, 4.0, 4.0]
    for step in steps:
        assert step / 2 <= b.next() <= step
    assert b.attempts == len(steps)
    b.reset()
    assert 0.25 <= b.next() <= 0.5


def test_a_base_past_the_cap_waits_the_cap() -> None:
    """A period of session_ttl/3 = 25 s with a 10 s cap must not crash the loop that owns it."""
    b = Backoff(25.0, 10.0, rng=random.Random(1))
    assert all(5.0 <= b.next() <= 10.0 for _ in range(5))


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
