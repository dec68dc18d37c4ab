"""The hub's counters: plain numbers that metrics read at scrape time (one thread, no lock)."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = ["FANOUT_BUCKETS", "FanoutHistogram", "HubStats"]

FANOUT_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass
class FanoutHistogram:
    """Delay from event origin (`ts`) to the end of this instance's writes, one sample per event.

    Cumulative-free bucket counts (`counts[i]` = samples <= bounds[i] and > bounds[i-1],
    the last slot is +Inf); `observers` are called with each sample (e.g. a Prometheus histogram).
    """

    bounds: tuple[float, ...] = FANOUT_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(FANOUT_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0
    observers: list[Callable[[str, float], None]] = field(default_factory=list)

    def observe(self, type_: str, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1
        for observer in self.observers:
            observer(type_, seconds)


@dataclass
class HubStats:
    """Plain counters; `sent`/`skipped` are per server message type, per socket write."""

    sent: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    slow_closes: int = 0
    ping_timeouts: int = 0  # sockets dropped for not answering a ping
    opened: int = 0
    closed: Counter[int] = field(default_factory=Counter)  # by close code we sent
    client_messages: Counter[str] = field(
        default_factory=Counter
    )  # by type, "invalid" for bad ones
    published: Counter[str] = field(default_factory=Counter)  # events originated here, by type
    publish_failures: int = 0
    stale_dropped: int = 0
    resyncs: int = 0
    fanout: FanoutHistogram = field(default_factory=FanoutHistogram)
