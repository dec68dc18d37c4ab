"""The connect floor of aiohttp itself: upgrade, send a tiny `hello`, read until close.

    python -m bench.floor_aiohttp --watchers 5000

Starts two such servers (nothing else: no auth, no session, no Redis) on free
loopback ports, opens every watcher's websocket at once with the same load
generator as bench.fanout, and prints the connect rate and server CPU per
connect as JSON. It answers one question: how much of the project's connect
cost is aiohttp's upgrade path, which the project is built on. Bounded: one
storm of `--watchers` sockets, then everything is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import psutil
import uvloop
from aiohttp import web

from bench.loadgen import LoadGen, Target
from store.embedded import free_port

PATH = "/creators/creator_001/channel/live/ws?session_id=x"


async def _socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("droptv.live.v1",), autoping=False, compress=False)
    await ws.prepare(request)
    await ws.send_str(json.dumps({"type": "hello", "epoch": "e", "seq": 0, "ts": time.time()}))
    async for _ in ws:
        pass
    return ws


def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/creators/{creator_id}/channel/live/ws", _socket)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, backlog=4096, access_log=None, print=None)


def _start(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bench.floor_aiohttp", "--serve", str(port)])


async def measure(watchers: int) -> dict[str, Any]:
    ports = [free_port(), free_port()]
    procs = [_start(p) for p in ports]
    try:
        await asyncio.sleep(2.0)
        servers = [psutil.Process(p.pid) for p in procs]
        with LoadGen(2) as lg:
            targets = [Target("127.0.0.1", ports[i % 2], PATH) for i in range(watchers)]
            before = sum(sum(s.cpu_times()[:2]) for s in servers)
            report = await lg.connect(targets, concurrency=0)
            after = sum(sum(s.cpu_times()[:2]) for s in servers)
            await lg.disconnect()
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    return {
        "bench": "floor_aiohttp",
        "watchers": watchers,
        "connected": report["connected"],
        "connect_rate_per_s": report["connect_rate_per_s"],
        "server_cpu_ms_per_connect": round(
            1000 * (after - before) / max(report["connected"], 1), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--watchers", type=int, default=5000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    print(json.dumps(asyncio.run(measure(args.watchers))))


if __name__ == "__main__":
    main()
