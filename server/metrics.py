"""`GET /metrics` in the Prometheus text format, per instance.

The hot path keeps plain counters (`server.hub_stats.HubStats`: a Counter update
per broadcast); this module turns them into Prometheus families only when
scraped, through a custom collector on a per-application registry (several
apps may share a process in tests, so nothing goes in the global registry).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from server.state import REALTIME


class RealtimeCollector(Collector):
    """Reads the hub's and bus's counters at scrape time; names are listed in the README."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        rt = self.app.get(REALTIME)
        if rt is None:
            return
        stats = rt.hub.stats
        yield GaugeMetricFamily(
            "droptv_ws_sockets_open", "Open watcher websockets", value=rt.hub.sockets_open
        )
        yield CounterMetricFamily(
            "droptv_ws_connects", "Websocket upgrades accepted", value=stats.opened
        )
        closes = CounterMetricFamily(
            "droptv_ws_closes", "Sockets closed by the server, by close code", labels=["code"]
        )
        for code, n in sorted(stats.closed.items()):
            closes.add_metric([str(code)], n)
        yield closes
        for name, doc, counter in (
            ("droptv_ws_messages_sent", "Messages written to sockets, by type", stats.sent),
            (
                "droptv_ws_messages_skipped",
                "Latest-value messages skipped for slow sockets, by type",
                stats.skipped,
            ),
            (
                "droptv_events_published",
                "Channel events originated on this instance, by type",
                stats.published,
            ),
            (
                "droptv_ws_client_messages",
                "Client messages received, by type (invalid: rejected)",
                stats.client_messages,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["type"])
            for type_, n in sorted(counter.items()):
                family.add_metric([type_], n)
            yield family
        yield CounterMetricFamily(
            "droptv_ws_slow_consumer_closes",
            "Sockets closed with 4008 past the hard buffer limit",
            value=stats.slow_closes,
        )
        yield CounterMetricFamily(
            "droptv_ws_ping_timeouts",
            "Sockets dropped for not answering a ping (half-open)",
            value=stats.ping_timeouts,
        )
        yield CounterMetricFamily(
            "droptv_bus_reconnects", "Reconnections of the Redis bus", value=rt.bus_reconnects
        )
        yield CounterMetricFamily(
            "droptv_bus_publish_failures",
            "Events that could not be published",
            value=stats.publish_failures,
        )
        hist = stats.fanout
        cumulative = list(accumulate(hist.counts))
        buckets = [(repr(bound), n) for bound, n in zip(hist.bounds, cumulative, strict=False)]
        buckets.append(("+Inf", cumulative[-1]))
        yield HistogramMetricFamily(
            "droptv_fanout_delay_seconds",
            "Delay from event origin to the end of its writes on this instance, one sample per event",
            buckets=buckets,
            sum_value=hist.total,
        )


def render(app: web.Application) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RealtimeCollector(app))
    return generate_latest(registry)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=render(request.app), headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", _metrics)
