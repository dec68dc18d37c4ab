"""Presence cost at 10k, 100k and 1M synthetic watchers on one channel, over 2, 5 and 20 instances.

    python -m bench.scale                       # the full run (about 1.5 minutes on 2 cores)
    python -m bench.scale --quick               # tiny sizes: checks the machinery in seconds

No sockets and no server processes: the watchers are synthetic, and the
benchmark makes exactly the calls that real instances make for them, against
a real PostgreSQL (fsync on) and a real Valkey on 127.0.0.1:

- each instance's share refresh every session_ttl/3 (`RedisPresence.share`,
  server.presence_keeper) and its liveness row (`SocketLedger.alive`);
- the lease holder's read every viewer_interval (`RedisPresence.counts`) and
  the peak write when the count rises (`store.viewers.record_peaks`,
  server.origin);
- the REST read path (`store.viewers.viewer_counts`, what server.cache
  refills at most once per viewer_interval per instance);
- join/leave flushes (`share` with joined/left sessions, coalesced every
  50 ms), socket claims and releases (store.sockets) and session creation;
- REST pollers: a `RedisPresence.poll` Lua call plus the heartbeat row update
  (`store.heartbeats.beat_sessions`) on real rows of a watch_sessions table
  that holds one row per watcher (made with one INSERT ... SELECT
  generate_series per size), and poller sets of the size of the poller mix.

Every call is timed alone (one at a time, client side: asyncpg/redis-py and
loopback included, so an upper bound of the servers' own time); Valkey's own
time per call (INFO commandstats) is reported beside it. "ms per second"
is the sum of the mean latencies of the calls one second of channel time
needs (see `method.per_second` in the JSON), printed beside the old design's
figures of issue 10 (one count of live session rows per read, one row update
per watcher per session_ttl/3). Output: bench/results/scale.json and scale.png.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench import charts  # noqa: F401 - selects the headless Agg backend
from bench._harness import (
    Harness,
    Meter,
    add_result_args,
    command_parser,
    int_list,
    new_summary,
    run_main,
    write_result,
)
from protocol.values import DEVICE_TYPES
from server.config import Settings
from server.origin import PEAK_REREAD
from server.presence_keeper import FLUSH_DELAY
from store.heartbeats import BeatRequest, beat_sessions
from store.keys import Keys
from store.presence_redis import RedisPresence
from store.sessions import create_session
from store.sockets import ClaimRequest, SocketLedger, claim_sessions
from store.viewers import record_peaks, viewer_counts

CHANNEL: Final = "ch_101"
CREATOR: Final = "creator_001"
STREAM: Final = "stream_abc123"
DEFAULTS: Final = Settings()
# Issue 10, measured on this 2-core box with the old design (presence in PostgreSQL rows):
# live sessions -> (one count of the channel's rows, ms; liveness refresh throughput, rows/s).
OLD_DESIGN: Final[dict[int, tuple[float, float]]] = {
    10_000: (3.0, 72_000.0),
    100_000: (22.0, 63_000.0),
    300_000: (63.0, 63_000.0),
    1_000_000: (220.0, 37_000.0),
}
TARGET_MS_PER_S: Final = 5.0
TARGET_READ_MS: Final = 1.0
# Assumed share of each device type among watchers (it changes the encoded counts only).
DEVICE_MIX: Final = (0.40, 0.20, 0.20, 0.10, 0.05, 0.05)
SESSION_PREFIX: Final = "sess_scale_"

Timed = Callable[[int], Awaitable[Any]]


# --- measuring ---------------------------------------------------------------------------------


async def timed(call: Timed, n: int) -> np.ndarray:
    """Latencies (s) of `n` calls `call(i)`, one at a time, after two untimed warm-up calls."""
    for i in range(2):
        await call(-1 - i)
    lat = np.empty(n, dtype=np.float64)
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        lat[i] = time.perf_counter() - t0
    return lat


def stats_us(lat: np.ndarray) -> dict[str, float | int | None]:
    """mean/p50/p99/max in µs and the number of calls."""
    if lat.size == 0:
        return {"n": 0, "mean": None, "p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(lat, [50, 99])
    return {
        "n": int(lat.size),
        "mean": round(float(lat.mean()) * 1e6, 1),
        "p50": round(float(p50) * 1e6, 1),
        "p99": round(float(p99) * 1e6, 1),
        "max": round(float(lat.max()) * 1e6, 1),
    }


class ServerClock:
    """Valkey's own time in EVALSHA (all our presence calls are Lua), from INFO commandstats."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._calls = 0
        self._usec = 0

    async def _read(self) -> tuple[int, int]:
        info = await self.redis.info("commandstats")
        stat = info.get("cmdstat_evalsha") or {}
        return int(stat.get("calls", 0)), int(stat.get("usec", 0))

    async def start(self) -> None:
        self._calls, self._usec = await self._read()

    async def us_per_call(self) -> float | None:
        calls, usec = await self._read()
        done = calls - self._calls
        return round((usec - self._usec) / done, 2) if done > 0 else None


async def timed_redis(clock: ServerClock, call: Timed, n: int) -> tuple[np.ndarray, float | None]:
    for i in range(2):
        await call(-1 - i)  # warm-up (and SCRIPT LOAD) outside the server-side window
    await clock.start()
    lat = np.empty(n, dtype=np.float64)
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        lat[i] = time.perf_counter() - t0
    return lat, await clock.us_per_call()


# --- synthetic state ---------------------------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal integers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def devices_of(n: int) -> dict[str, int]:
    """`n` sockets spread over the device types by DEVICE_MIX, summing to n."""
    counts = [int(n * share) for share in DEVICE_MIX]
    counts[0] += n - sum(counts)
    return {d: c for d, c in zip(DEVICE_TYPES, counts, strict=True) if c}


def session_id(g: int) -> str:
    return f"{SESSION_PREFIX}{g}"


def user_id(g: int) -> str:
    return f"u_scale_{g}"


def is_poller(g: int) -> bool:
    """Every tenth watcher polls REST (the poller mix); the others hold sockets."""
    return g % 10 == 0


_GROW_SQL: Final = (
    "insert into watch_sessions (session_id, user_id, creator_id, channel_id, stream_id,"
    " device_type, quality, expires_at, socket_instance)"
    f" select '{SESSION_PREFIX}' || g, 'u_scale_' || g, $3, $4, $5,"
    " ($6::text[])[1 + g % 6], 'auto', now() + interval '6 hours',"
    " case when g % 10 = 0 then null else 'sim-' || (g % 20) end"
    " from generate_series($1::int, $2::int) g"
)


async def grow_rows(pool: Any, have: int, want: int) -> float:
    """Add watch_sessions rows have+1..want (one per watcher); the seconds it took."""
    if want <= have:
        return 0.0
    t0 = time.perf_counter()
    async with pool.acquire() as conn:
        for first in range(have + 1, want + 1, 200_000):
            last = min(want, first + 200_000 - 1)
            async with conn.transaction():
                # A bulk load, not a request: lift the pool's per-statement limit for it.
                await conn.execute("set local statement_timeout = 0")
                await conn.execute(
                    _GROW_SQL,
                    first,
                    last,
                    CREATOR,
                    CHANNEL,
                    STREAM,
                    list(DEVICE_TYPES),
                    timeout=600,
                )
        async with conn.transaction():
            await conn.execute("set local statement_timeout = 0")
            await conn.execute("analyze watch_sessions", timeout=600)
    return time.perf_counter() - t0


async def seed_pollers(redis: Any, keys: Keys, watchers: int) -> int:
    """The poller sets of the mix: every tenth watcher, seen now (Redis clock), by device."""
    now_s, now_us = await redis.time()
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    for device in DEVICE_TYPES:
        await redis.delete(keys.pollers(CHANNEL, device))
    pipe = redis.pipeline(transaction=False)
    batch: dict[str, dict[str, int]] = {d: {} for d in DEVICE_TYPES}
    n = 0
    for g in range(10, watchers + 1, 10):
        device = DEVICE_TYPES[g % 6]
        batch[device][session_id(g)] = now_ms - (g % 25_000)  # spread over the last 25 s
        n += 1
        if n % 10_000 == 0:
            for d, members in batch.items():
                if members:
                    pipe.zadd(keys.pollers(CHANNEL, d), members)
            await pipe.execute()
            batch = {d: {} for d in DEVICE_TYPES}
    for d, members in batch.items():
        if members:
            pipe.zadd(keys.pollers(CHANNEL, d), members)
    await pipe.execute()
    return n


async def write_shares(presence: RedisPresence, sockets: int, instances: int, ttl: float) -> None:
    for i, n in enumerate(split(sockets, instances)):
        await presence.share(f"sim-{i}", CHANNEL, devices_of(n), ttl)


async def clear_shares(redis: Any, keys: Keys) -> None:
    await redis.delete(keys.shares(CHANNEL), keys.share_counts(CHANNEL))


# --- one size: the costs that depend on the number of watchers only -----------------------------


async def lifecycle_costs(
    pool: Any, presence: RedisPresence, clock: ServerClock, watchers: int, reps: int
) -> dict[str, Any]:
    """Per-event unit costs at this table size: heartbeats, polls, claims, releases, creates."""
    ttl = DEFAULTS.session_ttl
    rng = np.random.default_rng(watchers)
    pollers = np.arange(10, watchers + 1, 10)
    sockets = np.array([g for g in range(1, min(watchers, 50_000) + 1) if not is_poller(g)])
    out: dict[str, Any] = {}

    # A poller's heartbeat: one Lua call, then its row in a batched statement.
    picks = rng.choice(pollers, size=reps + 2, replace=len(pollers) < reps + 2)

    async def poll(i: int) -> None:
        g = int(picks[i])
        await presence.poll(
            CHANNEL, session_id(g), DEVICE_TYPES[g % 6], socket_instance=None, ttl=ttl
        )

    lat, server_us = await timed_redis(clock, poll, reps)
    out["poll"] = {**stats_us(lat), "redis_server_us": server_us}

    for batch in (1, 10, 100):
        n_statements = max(3, reps // batch // 2)
        pool_size = min(len(pollers), batch * (n_statements + 2))
        sample = rng.choice(pollers, size=pool_size, replace=False)

        async def beat(i: int, batch: int = batch, sample: np.ndarray = sample) -> None:
            start = (i % (len(sample) // batch)) * batch
            rows = sample[start : start + batch]
            await beat_sessions(
                pool, [BeatRequest(session_id(int(g)), user_id(int(g)), CREATOR, 1) for g in rows]
            )

        if len(pollers) >= batch:
            lat = await timed(beat, n_statements)
            st = stats_us(lat)
            out[f"beat_batch_{batch}"] = {
                **st,
                "rows": batch,
                "us_per_row": round(st["mean"] / batch, 1) if st["mean"] else None,
            }

    # A websocket connect's claim (batched per event-loop turn) and its release, on real rows.
    for batch in (1, 16):
        n_statements = max(3, reps // batch // 4)
        sample = rng.choice(
            sockets, size=min(len(sockets), batch * (n_statements + 2)), replace=False
        )

        async def claim(i: int, batch: int = batch, sample: np.ndarray = sample) -> None:
            start = (i % (len(sample) // batch)) * batch
            rows = sample[start : start + batch]
            found = await claim_sessions(
                pool,
                [ClaimRequest(session_id(int(g)), user_id(int(g)), CREATOR) for g in rows],
                f"sim-{int(rows[0]) % 20}",
            )
            assert all(c.touched for c in found.values()), "claim refused"

        if len(sockets) >= batch:
            lat = await timed(claim, n_statements)
            st = stats_us(lat)
            out[f"claim_batch_{batch}"] = {
                **st,
                "rows": batch,
                "us_per_row": round(st["mean"] / batch, 1) if st["mean"] else None,
            }
    # A socket close: releases are queued and written together (here 8 per statement); the
    # rows are claimed back (untimed) before each, so every release changes 8 rows.
    ledger = SocketLedger(pool, "sim-release")
    ring = [int(g) for g in rng.choice(sockets, size=min(len(sockets), 64), replace=False)]
    lat_list = []
    for i in range(max(3, reps // 8)):
        rows = [ring[(i * 8 + j) % len(ring)] for j in range(8)]
        requests = [ClaimRequest(session_id(g), user_id(g), CREATOR) for g in dict.fromkeys(rows)]
        await claim_sessions(pool, requests, ledger.instance_id)
        for r in requests:
            ledger.release(r.session_id)
        t0 = time.perf_counter()
        await ledger.flush_releases()
        lat_list.append(time.perf_counter() - t0)
    out["release_batch_8"] = {**stats_us(np.array(lat_list[2:])), "rows": 8}

    # POST watch (33): the locked create-and-check transaction of a new user's session.
    run = uuid.uuid4().hex[:6]

    async def create(i: int) -> None:
        await create_session(
            pool,
            user_id=f"u_new_{run}_{i}",
            creator_id=CREATOR,
            channel_id=CHANNEL,
            stream_id=STREAM,
            device_type="web",
            quality="auto",
            timezone="UTC",
            ttl=ttl,
            max_age=DEFAULTS.session_max_age,
            limit=DEFAULTS.max_concurrent_sessions,
        )

    lat = await timed(create, max(3, reps // 4))
    out["create_session"] = stats_us(lat)
    return out


# --- one configuration: N watchers over I instances ---------------------------------------------


class Peaks:
    """Strictly rising counts for `record_peaks`, so every "rising" call writes."""

    def __init__(self) -> None:
        self.level = 10_000_000

    def next(self) -> int:
        self.level += 1
        return self.level


async def config_costs(
    *,
    pool: Any,
    pool_async: Any,
    redis: Any,
    clock: ServerClock,
    socket_presence: RedisPresence,
    socket_keys: Keys,
    mix_presence: RedisPresence,
    mix_keys: Keys,
    peaks: Peaks,
    watchers: int,
    instances: int,
    reps: int,
    watch_minutes: float,
) -> dict[str, Any]:
    ttl = DEFAULTS.session_ttl
    period = max(0.2, ttl / 3)  # server.presence_keeper
    lat: dict[str, Any] = {}
    server_us: dict[str, float | None] = {}

    await clear_shares(redis, socket_keys)
    await clear_shares(redis, mix_keys)
    await write_shares(socket_presence, watchers, instances, ttl)
    mix_sockets = watchers - watchers // 10
    await write_shares(mix_presence, mix_sockets, instances, ttl)
    shares = [devices_of(n) for n in split(watchers, instances)]

    # Share refresh: every instance, every period (round-robin over the instances).
    async def refresh(i: int) -> None:
        k = i % instances
        await socket_presence.share(f"sim-{k}", CHANNEL, shares[k], ttl)

    arr, server_us["share_refresh"] = await timed_redis(clock, refresh, max(reps // 4, instances))
    lat["share_refresh"] = arr

    # Join/leave flush: the share plus the sessions that joined (leave the pollers) and left.
    per_instance_changes = 2 * watchers / (watch_minutes * 60) / instances
    flushes_per_instance = (1 - math.exp(-per_instance_changes * FLUSH_DELAY)) / FLUSH_DELAY
    per_flush = per_instance_changes / flushes_per_instance if flushes_per_instance else 0.0
    half = max(1, round(per_flush / 2))

    async def flush(i: int) -> None:
        k = i % instances
        base = 1 + (i * half * 2) % max(watchers - 2 * half, 1)
        joined = [session_id(base + j) for j in range(half)]
        left = [(session_id(base + half + j), DEVICE_TYPES[j % 6]) for j in range(half)]
        await socket_presence.share(f"sim-{k}", CHANNEL, shares[k], ttl, joined=joined, left=left)

    arr, server_us["share_flush"] = await timed_redis(clock, flush, max(reps // 4, instances))
    lat["share_flush"] = arr
    # The flushes' "left" sessions became pollers: take them out again, so counts stay exact.
    for device in DEVICE_TYPES:
        await redis.zremrangebyscore(socket_keys.pollers(CHANNEL, device), "-inf", "+inf")

    # The liveness row of each instance.
    ledgers = [SocketLedger(pool, f"sim-{k}") for k in range(instances)]

    async def alive(i: int) -> None:
        await ledgers[i % instances].alive()

    lat["alive"] = await timed(alive, max(reps // 8, instances))
    async_ledgers = [SocketLedger(pool_async, f"sim-{k}") for k in range(instances)]

    async def alive_async(i: int) -> None:
        await async_ledgers[i % instances].alive()

    lat["alive_async_commit"] = await timed(alive_async, max(reps // 8, instances))

    # What any write's commit waits for (the WAL flush, fsync on): a transaction with an xid.
    async def commit(i: int) -> None:
        await pool.fetchval("select txid_current()")

    lat["commit_floor"] = await timed(commit, max(reps // 8, 5))

    # The holder's read and the REST read path, socket-only and with the poller mix.
    async def counts(i: int) -> None:
        await socket_presence.counts(CHANNEL, ttl=ttl)

    arr, server_us["counts"] = await timed_redis(clock, counts, reps)
    lat["counts"] = arr
    found = await socket_presence.counts(CHANNEL, ttl=ttl)
    assert found.total == watchers, (found.total, watchers)

    async def counts_mix(i: int) -> None:
        await mix_presence.counts(CHANNEL, ttl=ttl)

    arr, server_us["counts_mix"] = await timed_redis(clock, counts_mix, reps)
    lat["counts_mix"] = arr
    found = await mix_presence.counts(CHANNEL, ttl=ttl)
    assert found.total == watchers, (found.total, watchers)

    async def rising(i: int) -> None:
        await record_peaks(pool, CHANNEL, peaks.next())

    lat["record_peaks_rising"] = await timed(rising, max(reps // 8, 5))

    async def rising_async(i: int) -> None:
        await record_peaks(pool_async, CHANNEL, peaks.next())

    lat["record_peaks_rising_async_commit"] = await timed(rising_async, max(reps // 8, 5))

    async def steady(i: int) -> None:
        await record_peaks(pool, CHANNEL, watchers)

    lat["record_peaks_steady"] = await timed(steady, max(reps // 4, 5))

    async def rest_read(i: int) -> None:
        await viewer_counts(socket_presence, pool, CHANNEL, ttl=ttl)

    lat["viewer_counts"] = await timed(rest_read, max(reps // 4, 5))

    mean = {k: float(v.mean()) for k, v in lat.items()}
    # One second of channel time for socket watchers (liveness, counting, peaks), as the
    # instances run it: the calls per second of each kind times their mean latency.
    rate = {
        "share_refresh": instances / period,
        "alive": instances / period,
        "counts": 1 / DEFAULTS.viewer_interval,
        "record_peaks_rising": 1
        / DEFAULTS.viewer_interval,  # worst case: the peak rises every tick
    }
    redis_ms = (
        rate["share_refresh"] * mean["share_refresh"] + rate["counts"] * mean["counts"]
    ) * 1e3
    pg_ms = (
        rate["alive"] * mean["alive"] + rate["record_peaks_rising"] * mean["record_peaks_rising"]
    ) * 1e3
    steady_peaks_ms = (
        (1 / PEAK_REREAD) * mean["record_peaks_steady"] * 1e3
    )  # a count that does not beat the peak: a read-only re-check every PEAK_REREAD
    pg_async_ms = (
        rate["alive"] * mean["alive_async_commit"]
        + rate["record_peaks_rising"] * mean["record_peaks_rising_async_commit"]
    ) * 1e3
    median = {k: float(np.median(v)) for k, v in lat.items()}
    total_p50_ms = sum(rate[k] * median[k] for k in rate) * 1e3
    churn_flushes = flushes_per_instance * instances
    rest_reads = instances / DEFAULTS.viewer_interval
    old_count_ms, old_rows_per_s = OLD_DESIGN.get(watchers, (None, None)) or (None, None)
    old = None
    if old_count_ms is not None and old_rows_per_s is not None:
        refresh_ms = watchers / period / old_rows_per_s * 1e3
        old = {
            "count_read_ms": old_count_ms,
            "refresh_rows_per_s_needed": round(watchers / period),
            "refresh_rows_per_s_capacity": old_rows_per_s,
            "ms_per_s": round(refresh_ms + old_count_ms / DEFAULTS.viewer_interval, 1),
            "rest_reads_ms_each": old_count_ms,
        }
    result: dict[str, Any] = {
        "watchers": watchers,
        "instances": instances,
        "sockets_per_instance": split(watchers, instances)[0],
        "latency_us": {k: stats_us(v) for k, v in lat.items()},
        "redis_server_us_per_call": server_us,
        "socket_watchers_per_s": {
            "calls_per_s": {k: round(v, 3) for k, v in rate.items()},
            "redis_ms": round(redis_ms, 3),
            "postgres_ms": round(pg_ms, 3),
            "total_ms": round(redis_ms + pg_ms, 3),
            "total_ms_from_p50": round(total_p50_ms, 3),
            "postgres_ms_async_commit": round(pg_async_ms, 3),
            "total_ms_async_commit": round(redis_ms + pg_async_ms, 3),
            "total_ms_when_peak_steady": round(
                redis_ms + pg_ms - mean["record_peaks_rising"] * 1e3 + steady_peaks_ms, 3
            ),
            "redis_server_ms": round(
                rate["share_refresh"] * (server_us["share_refresh"] or 0) / 1e3
                + rate["counts"] * (server_us["counts"] or 0) / 1e3,
                3,
            ),
        },
        "churn_per_s": {
            "assumption": f"mean watch time {watch_minutes:g} min: every watcher joins and leaves "
            "once per watch; an instance flushes a channel at most every 50 ms",
            "joins_and_leaves_per_s": round(2 * watchers / (watch_minutes * 60), 1),
            "flushes_per_s": round(churn_flushes, 2),
            "sessions_per_flush": 2 * half,
            "redis_ms": round(churn_flushes * mean["share_flush"] * 1e3, 3),
        },
        "rest_reads_per_s": {
            "note": "server.cache refills viewer_counts at most once per viewer_interval per "
            "instance, whatever the request rate; the bound is every instance serving REST reads",
            "calls_per_s": rest_reads,
            "ms": round(rest_reads * mean["viewer_counts"] * 1e3, 3),
        },
        "read_of_counts_ms": {
            "p50": round(float(np.percentile(lat["counts"], 50)) * 1e3, 4),
            "p99": round(float(np.percentile(lat["counts"], 99)) * 1e3, 4),
            "mix_p50": round(float(np.percentile(lat["counts_mix"], 50)) * 1e3, 4),
            "mix_p99": round(float(np.percentile(lat["counts_mix"], 99)) * 1e3, 4),
            "viewer_counts_p50": round(float(np.percentile(lat["viewer_counts"], 50)) * 1e3, 4),
            "viewer_counts_p99": round(float(np.percentile(lat["viewer_counts"], 99)) * 1e3, 4),
        },
        "old_design": old,
    }
    await clear_shares(redis, socket_keys)
    await clear_shares(redis, mix_keys)
    return result


def poller_mix(watchers: int, life: dict[str, Any], beat_batch: int) -> dict[str, Any]:
    """The per-second cost of the mix's pollers: 10 % of watchers heartbeating every 30 s."""
    pollers = watchers // 10
    per_s = pollers / DEFAULTS.heartbeat_interval
    beat = life.get(f"beat_batch_{beat_batch}") or life["beat_batch_1"]
    redis_ms = per_s * life["poll"]["mean"] / 1e3
    pg_ms = per_s * beat["us_per_row"] / 1e3
    return {
        "pollers": pollers,
        "heartbeats_per_s": round(per_s, 1),
        "beat_rows_per_statement": beat["rows"],
        "redis_ms": round(redis_ms, 2),
        "postgres_ms": round(pg_ms, 2),
        "total_ms": round(redis_ms + pg_ms, 2),
    }


# --- output ----------------------------------------------------------------------------------


def table(configs: list[dict[str, Any]]) -> str:
    head = (
        "| watchers | inst | new ms/s (sockets) | old ms/s | counts p50 / p99 | old count "
        "| REST read p50 | churn ms/s | pollers ms/s (batch 1 / 10) |"
    )
    rows = [head, "|" + "---|" * 9]
    for c in configs:
        old = c["old_design"] or {}
        r = c["read_of_counts_ms"]
        rows.append(
            f"| {c['watchers']:,} | {c['instances']} | {c['socket_watchers_per_s']['total_ms']:.2f} "
            f"| {old.get('ms_per_s', '—')} | {r['p50']:.3f} / {r['p99']:.3f} ms "
            f"| {old.get('count_read_ms', '—')} ms | {r['viewer_counts_p50']:.3f} ms "
            f"| {c['churn_per_s']['redis_ms']:.2f} "
            f"| {c['pollers_per_s']['batch_1']['total_ms']:.1f} / "
            f"{c['pollers_per_s']['batch_10']['total_ms']:.1f} |"
        )
    old = ["", "old design (issue 10): | live sessions | one count | liveness refresh |"]
    for n, (ms, rps) in OLD_DESIGN.items():
        old.append(f"  | {n:,} | {ms:g} ms | {rps / 1000:g}k rows/s |")
    return "\n".join(rows + old)


def chart(path: Path, configs: list[dict[str, Any]]) -> Path:
    import matplotlib.pyplot as plt  # Agg, as bench.charts (imported above) selected

    sizes = sorted({c["watchers"] for c in configs})
    counts = sorted({c["instances"] for c in configs})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5), dpi=110)
    width = 0.8 / (len(counts) + 1)
    x = np.arange(len(sizes))
    for i, inst in enumerate(counts):
        vals = [
            next(
                (
                    c["socket_watchers_per_s"]["total_ms"]
                    for c in configs
                    if c["watchers"] == n and c["instances"] == inst
                ),
                np.nan,
            )
            for n in sizes
        ]
        left.bar(x + i * width - 0.4 + width / 2, vals, width, label=f"new, {inst} instances")
    olds = [
        OLD_DESIGN[n][0] + n / (DEFAULTS.session_ttl / 3) / OLD_DESIGN[n][1] * 1e3
        if n in OLD_DESIGN
        else np.nan
        for n in sizes
    ]
    left.bar(
        x + len(counts) * width - 0.4 + width / 2, olds, width, label="old design", color="grey"
    )
    left.axhline(TARGET_MS_PER_S, color="red", linewidth=1, alpha=0.6, label="target 5 ms/s")
    left.set_yscale("log")
    left.set_xticks(x, [f"{n:,}" for n in sizes])
    left.set_xlabel("watchers on one channel")
    left.set_ylabel("PostgreSQL + Redis ms per second (log)")
    left.set_title("presence upkeep per second of channel time")
    left.legend(fontsize=7)
    left.grid(True, axis="y", alpha=0.3)
    for inst in counts:
        p50 = [
            next(
                (
                    c["read_of_counts_ms"]["p50"]
                    for c in configs
                    if c["watchers"] == n and c["instances"] == inst
                ),
                np.nan,
            )
            for n in sizes
        ]
        p99 = [
            next(
                (
                    c["read_of_counts_ms"]["p99"]
                    for c in configs
                    if c["watchers"] == n and c["instances"] == inst
                ),
                np.nan,
            )
            for n in sizes
        ]
        right.plot(sizes, p50, marker="o", label=f"new p50, {inst} instances")
        right.plot(sizes, p99, marker="x", linestyle=":", label=f"new p99, {inst} instances")
    old_sizes = list(OLD_DESIGN)
    right.plot(
        old_sizes,
        [OLD_DESIGN[n][0] for n in old_sizes],
        marker="s",
        color="grey",
        linestyle="--",
        label="old design (one count)",
    )
    right.axhline(TARGET_READ_MS, color="red", linewidth=1, alpha=0.6, label="target 1 ms")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("watchers on one channel")
    right.set_ylabel("one read of counts (ms, log)")
    right.set_title("latency of one read of counts")
    right.legend(fontsize=7)
    right.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --- main ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("scale", __doc__)
    p.add_argument("--watchers", default="10000,100000,1000000", help="comma list of sizes")
    p.add_argument("--instances", default="2,5,20", help="comma list of instance counts")
    p.add_argument("--reps", type=int, default=2000, help="reads of counts per configuration")
    p.add_argument("--watch-minutes", type=float, default=30.0, help="assumed mean watch time")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    p.add_argument("--no-fsync", action="store_true", help="PostgreSQL without fsync")
    p.add_argument("--database-url", help="use this migrated PostgreSQL (not stopped)")
    p.add_argument("--redis-url", help="use this Redis/Valkey (not stopped)")
    add_result_args(p, "scale")
    return p


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    from store.demo import load_demo
    from store.pg import create_pool
    from store.redis_client import make_redis

    if args.quick:
        args.watchers, args.instances, args.reps = "200,1000", "2,5", min(args.reps, 60)
    sizes, instance_counts = sorted(int_list(args.watchers)), int_list(args.instances)
    summary = new_summary(
        "scale",
        {
            "synthetic": "no sockets: the calls real instances make for their watchers, timed "
            "one at a time on the client (asyncpg / redis-py, loopback included)",
            "settings": {
                "session_ttl_s": DEFAULTS.session_ttl,
                "share_refresh_period_s": max(0.2, DEFAULTS.session_ttl / 3),
                "viewer_interval_s": DEFAULTS.viewer_interval,
                "heartbeat_interval_s": DEFAULTS.heartbeat_interval,
                "flush_delay_s": FLUSH_DELAY,
                "peak_reread_s": PEAK_REREAD,
            },
            "per_second": "socket watchers: instances/(session_ttl/3) share refreshes (Redis) and "
            "liveness rows (PostgreSQL) + one counts read (Redis) and one rising record_peaks "
            "(PostgreSQL write, worst case) per viewer_interval; each times its mean latency",
            "pollers": "10 % of watchers poll REST every heartbeat_interval: per heartbeat one "
            "poll Lua call + one row of beat_sessions (at 1, 10 or 100 rows per statement)",
            "rows": "one watch_sessions row per watcher (INSERT ... SELECT generate_series), 90 % "
            "held by a socket of sim-0..19, 10 % pollers; heartbeats, claims on random rows",
            "redis_server_us_per_call": "Valkey's own time in EVALSHA (INFO commandstats)",
            "postgres_fsync": not args.no_fsync,
            "old_design": "issue 10's measurements; old ms/s = watchers/(session_ttl/3) rows at "
            "the measured refresh throughput + one count per viewer_interval",
        },
    )
    summary["quick"] = bool(args.quick)
    summary["targets"] = {
        "ms_per_s_at_1m_20": TARGET_MS_PER_S,
        "read_of_counts_ms": TARGET_READ_MS,
    }
    configs: list[dict[str, Any]] = []
    lifecycle: dict[str, Any] = {}
    setup: dict[str, float] = {}
    started = time.monotonic()
    with Harness() as h:
        db_url = args.database_url or h.start_postgres(fsync=not args.no_fsync)
        if args.database_url is None:
            await h.prepare_database(demo=True)
        redis_url = args.redis_url or h.start_valkey()
        pool = await create_pool(db_url, min_size=2, max_size=4)
        # The same statements with synchronous_commit off: what presence writes would cost if
        # they did not wait for the WAL flush (liveness and peaks can be re-derived).
        pool_async = await asyncpg.create_pool(
            db_url, min_size=1, max_size=2, server_settings={"synchronous_commit": "off"}
        )
        meter = Meter([]).start()
        redis = make_redis(redis_url)
        try:
            await load_demo(pool, now=datetime.now(UTC))
            if (
                await pool.fetchval("select count(*) from channels where channel_id = $1", CHANNEL)
                != 1
            ):
                raise RuntimeError(f"{CHANNEL} is missing: load the demo world first")
            have = int(
                await pool.fetchval(
                    "select count(*) from watch_sessions where session_id like $1",
                    SESSION_PREFIX + "%",
                )
            )
            if have:
                raise RuntimeError("the database already holds bench.scale rows: use a fresh one")
            clock = ServerClock(redis)
            socket_keys, mix_keys = Keys(h.prefix + "s"), Keys(h.prefix + "m")
            socket_presence = RedisPresence(redis, socket_keys)
            mix_presence = RedisPresence(redis, mix_keys)
            peaks = Peaks()
            for watchers in sizes:
                grow_s = await grow_rows(pool, have, watchers)
                have = max(have, watchers)
                t0 = time.perf_counter()
                pollers = await seed_pollers(redis, mix_keys, watchers)
                setup[str(watchers)] = round(grow_s, 2)
                print(
                    f"# {watchers:,} watchers: rows in {grow_s:.1f} s, {pollers:,} pollers "
                    f"in {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                )
                life = await lifecycle_costs(
                    pool, mix_presence, clock, watchers, max(args.reps // 4, 20)
                )
                lifecycle[str(watchers)] = life
                for instances in instance_counts:
                    result = await config_costs(
                        pool=pool,
                        pool_async=pool_async,
                        redis=redis,
                        clock=clock,
                        socket_presence=socket_presence,
                        socket_keys=socket_keys,
                        mix_presence=mix_presence,
                        mix_keys=mix_keys,
                        peaks=peaks,
                        watchers=watchers,
                        instances=instances,
                        reps=args.reps,
                        watch_minutes=args.watch_minutes,
                    )
                    result["pollers_per_s"] = {
                        f"batch_{b}": poller_mix(watchers, life, b) for b in (1, 10, 100)
                    }
                    configs.append(result)
                    print(
                        f"# {watchers:,} / {instances}: "
                        f"{result['socket_watchers_per_s']['total_ms']:.3f} ms/s, counts p50 "
                        f"{result['read_of_counts_ms']['p50']:.3f} ms",
                        file=sys.stderr,
                    )
            summary["machine_busy_pct"] = round(meter.stop().machine_busy_pct, 1)
            summary["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        finally:
            await redis.aclose()
            await pool_async.close()
            await pool.close()
    summary["setup_rows_seconds"] = setup
    summary["lifecycle_us"] = lifecycle
    summary["configs"] = configs
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["headline"] = headline(configs)
    print(table(configs), file=sys.stderr)
    write_result(args.name, summary, args.out, chart=lambda png: chart(png, configs))
    return summary


def headline(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """The biggest configuration against the targets of issue 10."""
    if not configs:
        return {}
    top = max(configs, key=lambda c: (c["watchers"], c["instances"]))
    per_s = top["socket_watchers_per_s"]["total_ms"]
    reads = top["read_of_counts_ms"]
    old = top["old_design"] or {}
    return {
        "watchers": top["watchers"],
        "instances": top["instances"],
        "socket_ms_per_s": per_s,
        "socket_ms_per_s_met": per_s < TARGET_MS_PER_S,
        "socket_ms_per_s_from_p50": top["socket_watchers_per_s"]["total_ms_from_p50"],
        "socket_ms_per_s_peak_steady": top["socket_watchers_per_s"]["total_ms_when_peak_steady"],
        "socket_ms_per_s_async_commit": top["socket_watchers_per_s"]["total_ms_async_commit"],
        "commit_floor_p50_ms": round(top["latency_us"]["commit_floor"]["p50"] / 1e3, 3),
        "read_of_counts_p50_ms": reads["p50"],
        "read_of_counts_p99_ms": reads["p99"],
        "read_of_counts_met": reads["p99"] < TARGET_READ_MS,
        "rest_read_viewer_counts_p50_ms": reads["viewer_counts_p50"],
        "churn_ms_per_s": top["churn_per_s"]["redis_ms"],
        "pollers_ms_per_s_batch_1": top["pollers_per_s"]["batch_1"]["total_ms"],
        "pollers_ms_per_s_batch_10": top["pollers_per_s"]["batch_10"]["total_ms"],
        "old_design_ms_per_s": old.get("ms_per_s"),
        "old_design_count_ms": old.get("count_read_ms"),
    }


def main(argv: list[str] | None = None) -> int:
    return run_main(main_async(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
