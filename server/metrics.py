"""`GET /metrics` in the Prometheus text format: this instance, or every worker of `--workers N`.

The hot path keeps plain counters (`server.hub_stats.HubStats`: a Counter update
per broadcast); `RealtimeCollector` turns them into Prometheus families only
when scraped, and `PoolCollector` reads the asyncpg pool the same way. HTTP
request metrics are real prometheus_client Counter/Histogram objects, updated
by server.access. Everything lives on a per-application registry (several apps
may share a process in tests, so nothing goes in the global registry); the
process collector adds CPU, memory and file descriptors of the process.

Under `serve --workers N`, server.metrics_workers gathers the other workers'
families into the answer (each sample labelled `worker`), so one scrape sees
the whole port whichever worker the kernel hands it to.

Protection: with `metrics_token` set, /metrics needs `Authorization: Bearer
<token>`; without it, only loopback clients are answered (403 otherwise).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from itertools import accumulate
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from server.middleware import error_response
from server.state import POOL, REALTIME, SETTINGS

__all__ = ["METRICS", "AppMetrics", "guard", "refusal", "render", "response"]


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


class PoolCollector(Collector):
    """The asyncpg pool's connections at scrape time: open, idle, in use, and the cap."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        pool = self.app.get(POOL)
        if pool is None:
            return
        size, idle = pool.get_size(), pool.get_idle_size()
        for name, doc, value in (
            ("droptv_db_pool_connections", "Open PostgreSQL connections of the pool", size),
            ("droptv_db_pool_idle", "Pool connections not lent out", idle),
            (
                "droptv_db_pool_in_use",
                "Pool connections lent out (queries, transactions)",
                size - idle,
            ),
            ("droptv_db_pool_max", "The pool's connection cap (pg_pool_max)", pool.get_max_size()),
            (
                "droptv_db_pool_min",
                "Connections the pool keeps open (pg_pool_min)",
                pool.get_min_size(),
            ),
        ):
            yield GaugeMetricFamily(name, doc, value=value)


class AppMetrics:
    """One application's registry and the HTTP metrics server.access updates per request."""

    def __init__(self, app: web.Application) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "droptv_http_requests",
            "HTTP requests answered, by method, route (the route's template) and status",
            labels,
            registry=registry,
        )
        self.latency = Histogram(
            "droptv_http_request_duration_seconds",
            "Time to answer an HTTP request (websocket upgrades excluded)",
            labels,
            registry=registry,
        )
        registry.register(RealtimeCollector(app))
        registry.register(PoolCollector(app))
        ProcessCollector(registry=registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS: Final = web.AppKey("metrics", AppMetrics)


def render(app: web.Application) -> bytes:
    """This process's families only (what a worker contributes to the merged answer)."""
    return app[METRICS].render()


def _loopback(remote: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def refusal(remote: str | None, authorization: str, token: str) -> int | None:
    """None when the scrape is allowed; else the status to answer (401 or 403)."""
    if token:
        sent = authorization.removeprefix("Bearer ").encode()
        ok = authorization.startswith("Bearer ") and hmac.compare_digest(sent, token.encode())
        return None if ok else 401
    return None if _loopback(remote) else 403


def guard(request: web.Request) -> web.Response | None:
    """The 401/403 answer for a scrape that may not see the metrics, or None."""
    token = request.app[SETTINGS].metrics_token
    status = refusal(request.remote, request.headers.get("Authorization", ""), token)
    if status == 401:
        return error_response(401, "/metrics needs the bearer token of DROPTV_METRICS_TOKEN")
    if status == 403:
        return error_response(
            403,
            "/metrics answers loopback clients only; set DROPTV_METRICS_TOKEN to scrape "
            "from elsewhere with that bearer token",
        )
    return None


def response(body: bytes) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
