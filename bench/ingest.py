"""Analytics ingest: events/s committed and acknowledgement latency at batch sizes 1, 50, 500.

    python -m bench.ingest --batches 1,50,500 --clients 32 --duration 5

PostgreSQL runs with fsync and synchronous_commit on (production durability:
a 200 means the events are on disk). `--instances` project instances (default
1) receive the load. `--clients` concurrent players, spread over
`--processes` client processes (aiohttp), each open an analytics session (51)
and then post event batches (54) back to back for `--duration` seconds per
batch size; every event has a unique event_id. Ack latency is the time from
sending a batch to its 200.

Afterwards every event_id that was acknowledged is looked up in PostgreSQL
(`analytics_events`): `acked_missing` must be 0. Output: bench/results/ingest.json
and ingest.png.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from array import array
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import numpy as np

from bench import charts
from bench._harness import (
    Harness,
    Meter,
    add_result_args,
    command_parser,
    int_list,
    merged_counts,
    merged_latencies,
    new_summary,
    percentiles,
    run_main,
    write_result,
)
from bench.loadgen import run_processes

EVENT_TYPES: Final = (
    "reaction",
    "quality_change",
    "stream_buffer_start",
    "stream_buffer_end",
    "mute",
    "unmute",
    "share",
    "tip",
)
_encode: Final = msgspec.json.encode


def event_id(run: str, client: int, request: int, k: int) -> str:
    return f"{run}-{client}-{request}-{k}"


def _start_body(run: str, client: int) -> dict[str, Any]:
    return {
        "session_id": f"{run}_s{client}",
        "user_id": f"{run}_u{client}",
        "device_id": f"{run}_d{client}",
        "platform": "web",
        "app_version": "2.4.1",
        "stream": {
            "stream_id": "stream_abc123",
            "channel_id": "ch_101",
            "creator_id": "creator_001",
            "creator_name": "Chris Spencer",
        },
        "epg": {
            "current_program_id": "prog_002",
            "current_program_title": "Behind the Laughs",
            "program_position_seconds": 900,
        },
        "playback": {"quality": "auto", "latency_mode": "low", "dvr_enabled": False},
        "device": {"type": "web", "os": "macOS", "connection_type": "wifi"},
        "geo": {"country": "US", "timezone": "America/New_York"},
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


async def ingest_worker(arg: dict[str, Any]) -> dict[str, Any]:
    """One client process: `clients` players posting `batch`-event batches until the deadline."""
    import aiohttp
    import jwt

    run: str = arg["run"]
    urls: list[str] = arg["urls"]
    first: int = arg["first_client"]
    clients: int = arg["clients"]
    batch: int = arg["batch"]
    duration: float = arg["duration"]
    lat = array("d")
    acked: dict[int, array[int]] = {c: array("i") for c in range(first, first + clients)}
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    accepted = 0
    rejected = 0
    cpu0 = time.process_time()
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=clients * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        def headers(client: int) -> dict[str, str]:
            now = int(time.time())
            token = jwt.encode(
                {"sub": f"{run}_u{client}", "iat": now, "exp": now + 3600},
                arg["secret"],
                algorithm="HS256",
            )
            return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        async def start(client: int) -> None:
            url = urls[client % len(urls)] + "/analytics/live/session/start"
            async with http.post(
                url, data=_encode(_start_body(run, client)), headers=headers(client)
            ) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"session start: {resp.status} {await resp.text()}")

        await asyncio.gather(*(start(c) for c in range(first, first + clients)))
        delay = arg["start_at"] - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        end = t0 + duration
        cpu0 = time.process_time()

        async def player(client: int) -> None:
            nonlocal accepted, rejected
            url = urls[client % len(urls)] + "/analytics/live/events"
            hdrs = headers(client)
            head = {
                "session_id": f"{run}_s{client}",
                "user_id": f"{run}_u{client}",
                "device_id": f"{run}_d{client}",
                "stream_id": "stream_abc123",
                "channel_id": "ch_101",
                "creator_id": "creator_001",
            }
            request = 0
            while time.perf_counter() < end and request < arg["max_requests"]:
                stamp_ = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                body = _encode(
                    {
                        **head,
                        "events": [
                            {
                                "event_id": event_id(run, client, request, k),
                                "event_type": EVENT_TYPES[k % len(EVENT_TYPES)],
                                "timestamp": stamp_,
                                "metadata": {"n": k},
                            }
                            for k in range(batch)
                        ],
                    }
                )
                t = time.perf_counter()
                try:
                    async with http.post(url, data=body, headers=hdrs) as resp:
                        data = await resp.read()
                        statuses[resp.status] += 1
                        if resp.status == 200:
                            lat.append(time.perf_counter() - t)
                            out = msgspec.json.decode(data)["data"]
                            accepted += out["accepted_count"]
                            rejected += out["rejected_count"]
                            acked[client].append(request)
                except (aiohttp.ClientError, TimeoutError) as err:
                    errors[type(err).__name__] += 1
                request += 1

        await asyncio.gather(*(player(c) for c in range(first, first + clients)))
        wall = time.perf_counter() - t0
    return {
        "lat": lat.tobytes(),
        "acked": {c: a.tobytes() for c, a in acked.items()},
        "accepted": accepted,
        "rejected": rejected,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu0,
    }


async def verify(database_url: str, ids: list[str]) -> int:
    """How many of `ids` are not in analytics_events (must be 0)."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("create temp table acked (event_id text) on commit drop")
            await conn.copy_records_to_table("acked", records=[(i,) for i in ids])
            missing = await conn.fetchval(
                "select count(*) from acked a where not exists"
                " (select 1 from analytics_events e where e.event_id = a.event_id)"
            )
    finally:
        await conn.close()
    return int(missing)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("ingest", __doc__)
    p.add_argument("--batches", default="1,50,500", help="comma list of events per request")
    p.add_argument("--clients", type=int, default=32, help="concurrent players in total")
    p.add_argument("--processes", type=int, default=2, help="client processes")
    p.add_argument("--instances", type=int, default=1, help="project instances")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per batch size")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="per player, per batch size")
    add_result_args(p, "ingest")
    return p


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    summary = new_summary(
        "ingest",
        {
            "postgres_fsync": True,
            "synchronous_commit": True,
            "clients": args.clients,
            "client_processes": args.processes,
            "instances": args.instances,
            "duration_s_per_batch_size": args.duration,
            "events_per_s": "events acknowledged with 200 (each accepted, durable) / wall time",
            "ack_latency": "send of a batch to its 200 response, per request",
            "verification": "every acknowledged event_id is looked up in analytics_events",
        },
    )
    summary["runs"] = []
    with Harness() as h:
        h.start_postgres(fsync=True)
        summary["demo_world"] = await h.prepare_database(demo=True)
        servers = h.start_project(args.instances)
        assert h.pg is not None
        per = [
            args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
            for i in range(args.processes)
        ]
        for batch in int_list(args.batches):
            run = "i" + uuid.uuid4().hex[:6]
            first = 0
            work = []
            for n in per:
                if n:
                    work.append(
                        {
                            "run": run,
                            "urls": [s.url for s in servers],
                            "first_client": first,
                            "clients": n,
                            "batch": batch,
                            "duration": args.duration,
                            "start_at": time.time() + 3.0,
                            "secret": h.secret,
                            "max_requests": args.max_requests,
                        }
                    )
                first += n
            meter = Meter([s.ps for s in servers], backends=h.backend_procs()).start()
            results = await run_processes(
                "bench.ingest:ingest_worker", work, timeout=args.duration + 120
            )
            window = meter.stop()
            lat = merged_latencies(results)
            ids: list[str] = []
            for r in results:
                for client, raw in r["acked"].items():
                    for request in np.frombuffer(raw, dtype=np.int32):
                        ids.extend(event_id(run, client, int(request), k) for k in range(batch))
            missing = await verify(h.pg.url, ids)
            wall = max(r["wall_s"] for r in results)
            statuses = merged_counts(results, "statuses")
            errors = merged_counts(results, "errors")
            accepted = sum(r["accepted"] for r in results)
            result = {
                "batch": batch,
                "requests": int(lat.size),
                "acked_events": len(ids),
                "accepted_events": accepted,
                "rejected_events": sum(r["rejected"] for r in results),
                "events_per_s": round(len(ids) / wall, 1),
                "requests_per_s": round(lat.size / wall, 1),
                "ack_latency_ms": percentiles(lat),
                "statuses": {str(k): v for k, v in statuses.items()},
                "errors": dict(errors),
                "acked_missing": missing,
                "server_cpu_s": round(window.server_cpu_s, 3),
                "server_cpu_us_per_event": round(window.server_cpu_s / len(ids) * 1e6, 2)
                if ids
                else None,
                "postgres_cpu_s": round(window.backend_cpu_s, 3),
                "loadgen_cpu_s": round(sum(r["cpu_s"] for r in results), 3),
                "machine_busy_pct": round(window.machine_busy_pct, 1),
                "wall_s": round(wall, 3),
            }
            summary["runs"].append(result)
            print(
                f"# batch {batch}: {result['events_per_s']} events/s, p99 "
                f"{result['ack_latency_ms']['p99']} ms, missing {missing}",
                file=sys.stderr,
            )
    summary["acked_missing_total"] = sum(r["acked_missing"] for r in summary["runs"])
    runs = summary["runs"]
    write_result(
        args.name,
        summary,
        args.out,
        chart=lambda png: charts.grouped_bars(
            png,
            [f"batch {r['batch']}" for r in runs],
            {
                "events/s committed": [r["events_per_s"] for r in runs],
                "ack p50 (ms)": [r["ack_latency_ms"]["p50"] for r in runs],
                "ack p99 (ms)": [r["ack_latency_ms"]["p99"] for r in runs],
            },
            title=f"analytics ingest, {args.clients} clients, fsync on "
            f"({summary['machine']['cores']} cores)",
            ylabel="value (log scale)",
            log=True,
        ),
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_main(main_async(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
