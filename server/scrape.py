"""`GET /metrics`: the guard, then this process's families, or every worker's under `--workers N`.

Why gather at scrape time rather than prometheus_client's multiprocess mode
or a port per worker: the kernel hands a scrape on the shared port to any
worker, so each worker must be able to answer for all of them; the
multiprocess mode would need every scrape-time collector (hub stats, the
asyncpg pool, the process collector) rewritten as mmap-backed values and
still could not report the others' process metrics, and a port per worker
makes operators list N targets that move when a worker restarts.

So each worker of a supervisor also listens on a private loopback port (an
ephemeral one) that serves only its own families, and writes that port to a
per-supervisor directory in the system temp dir (`droptv-workers-<uid>-<pid of
the supervisor>/<slot>.json`). The worker answering a scrape fetches the
others' families concurrently (each within PEER_TIMEOUT), adds a `worker`
label (the slot, 0…N-1) to every sample, its own included, and answers with
one merged exposition: `sum without (worker) (...)` is the port's total. A
worker that does not answer in time is left out of that scrape and counted in
`droptv_metrics_workers_missing`; a restarted worker's counters restart from
zero under its slot, which Prometheus' rate() reads as a counter reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from server.metrics import METRICS, AppMetrics, guard, refusal, render, response
from server.state import SETTINGS

__all__ = ["PEER_TIMEOUT", "Peers", "merge", "setup", "worker_slot"]

PEER_TIMEOUT: Final = 2.0
WORKER_PREFIX: Final = "worker-"  # server.workers names its processes worker-<slot>


def worker_slot() -> tuple[str, int] | None:
    """(slot, supervisor pid) when this process is a worker of `serve --workers N`, else None."""
    parent = mp.parent_process()
    name = mp.current_process().name
    if parent is None or parent.pid is None or not name.startswith(WORKER_PREFIX):
        return None
    return name.removeprefix(WORKER_PREFIX), parent.pid


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def merge(parts: list[tuple[str, str]], missing: int = 0) -> bytes:
    """One exposition of several workers' texts, each sample labelled with its `worker`."""
    families: dict[str, Metric] = {}
    for worker, text in parts:
        for family in text_string_to_metric_families(text):
            into = families.get(family.name)
            if into is None:
                into = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = into
            into.samples.extend(
                s._replace(labels={**s.labels, "worker": worker}) for s in family.samples
            )
    families["droptv_metrics_workers_merged"] = GaugeMetricFamily(
        "droptv_metrics_workers_merged", "Workers whose families this scrape holds", len(parts)
    )
    families["droptv_metrics_workers_missing"] = GaugeMetricFamily(
        "droptv_metrics_workers_missing",
        "Workers listed by the supervisor that did not answer this scrape in time",
        missing,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families.values())))
    return generate_latest(registry)


class Peers:
    """This worker's private metrics listener, its entry in the directory, and the fan-in."""

    def __init__(self, app: web.Application, slot: str, supervisor: int) -> None:
        self.app = app
        self.slot = slot
        self.directory = Path(tempfile.gettempdir()) / f"droptv-workers-{os.getuid()}-{supervisor}"
        self.entry = self.directory / f"{slot}.json"
        self.token = app[SETTINGS].metrics_token
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def _own(self, request: web.Request) -> web.Response:
        if refusal("127.0.0.1", request.headers.get("Authorization", ""), self.token):
            raise web.HTTPUnauthorized()
        return response(render(self.app))

    async def start(self) -> None:
        private = web.Application()
        private.router.add_get("/metrics", self._own)
        self._runner = runner = web.AppRunner(private, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT))
        self.directory.mkdir(mode=0o700, exist_ok=True)
        tmp = self.entry.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "port": port}))
        os.replace(tmp, self.entry)  # a restarted worker replaces its slot's entry atomically

    async def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.entry.read_text())["pid"] == os.getpid():
                self.entry.unlink()
        with contextlib.suppress(OSError):
            self.directory.rmdir()  # the last worker out removes the directory
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _others(self) -> list[tuple[str, int]]:
        found = []
        for path in sorted(self.directory.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                entry = json.loads(path.read_text())
                if path.stem != self.slot and _alive(int(entry["pid"])):
                    found.append((path.stem, int(entry["port"])))
        return found

    async def _fetch(self, port: int) -> str:
        assert self._http is not None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self._http.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as resp:
            resp.raise_for_status()
            return await resp.text()

    async def gather(self, local: bytes) -> bytes:
        """The merged exposition; peers that fail or time out are left out and counted."""
        others = self._others()
        texts = await asyncio.gather(
            *(self._fetch(port) for _, port in others), return_exceptions=True
        )
        parts = [(self.slot, local.decode())]
        parts += [
            (slot, t) for (slot, _), t in zip(others, texts, strict=True) if isinstance(t, str)
        ]
        return merge(sorted(parts), missing=1 + len(others) - len(parts))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


PEERS: Final = web.AppKey("metrics_peers", Peers)


async def _peers_ctx(app: web.Application) -> AsyncIterator[None]:
    """Only in a worker of `serve --workers N`: the private listener and directory entry."""
    found = worker_slot()
    if found is None:
        yield
        return
    peers = Peers(app, *found)
    await peers.start()
    app[PEERS] = peers
    try:
        yield
    finally:
        await peers.stop()


async def _metrics(request: web.Request) -> web.Response:
    refused = guard(request)
    if refused is not None:
        return refused
    local = render(request.app)
    peers = request.app.get(PEERS)
    return response(local if peers is None else await peers.gather(local))


def setup(app: web.Application) -> None:
    app[METRICS] = AppMetrics(app)
    app.cleanup_ctx.append(_peers_ctx)
    app.router.add_get("/metrics", _metrics)
