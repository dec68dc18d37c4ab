"""`GET /metrics` in the Prometheus text format, per instance.

Each application gets its own registry (several apps may share a process in
tests). The hub and the bus report through `Metrics`; counting is a dict
update or a histogram observe, cheap enough for the fan-out path, where it is
called once per broadcast, not once per socket.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

disable_created_metrics()  # *_created series double the output and nobody graphs them

FANOUT_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The instance's counters; names are stable and documented in the README."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sockets_open = Gauge("droptv_ws_sockets_open", "Open watcher websockets", registry=r)
        self.connects = Counter("droptv_ws_connects", "Websocket upgrades accepted", registry=r)
        self.closes = Counter("droptv_ws_closes", "Websockets closed by the server, by close code",
                              ["code"], registry=r)
        self.sent = Counter("droptv_ws_messages_sent", "Messages written to sockets, by type",
                            ["type"], registry=r)
        self.skipped = Counter("droptv_ws_messages_skipped",
                               "Latest-value messages skipped for slow sockets, by type", ["type"], registry=r)
        self.slow_closes = Counter("droptv_ws_slow_consumer_closes",
                                   "Sockets closed with 4008 past the hard buffer limit", registry=r)
        self.bus_reconnects = Counter("droptv_bus_reconnects", "Reconnections of the Redis bus", registry=r)
        self.bus_received = Counter("droptv_bus_messages_received", "Bus messages received, by type",
                                    ["type"], registry=r)
        self.fanout_delay = Histogram(
            "droptv_fanout_delay_seconds",
            "Delay from event origin to the write of its frame on this instance's sockets",
            buckets=FANOUT_BUCKETS, registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    """Create the instance's Metrics before the real-time layer starts (it reports into it)."""
    app[METRICS] = Metrics()
    app.router.add_get("/metrics", _metrics)
