"""/healthz, /readyz, JSON logs and /metrics (HTTP, pool, process; `--workers 2` merged).

Faults are caused for real: Valkey is stopped and started again, and the
test's database stops accepting connections (`allow_connections false`,
backends terminated), while real server processes serve.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import refusal
from store.embedded import EmbeddedValkey, free_port
from tests.conftest import AppClientFactory, ServerFactory, ServerProcess
from tests.wsutil import Watcher, start_watch

LIVE_ROUTE = "/creators/{creator_id}/channel/live"


def samples(text: str, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` whose labels include `labels`."""
    found = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                found.append((s.labels, s.value))
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(v for _, v in samples(text, name, **labels))


async def _ready(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url + "/readyz") as resp:
        return resp.status, await resp.json()


async def _until(http: aiohttp.ClientSession, url: str, status: int, timeout: float = 20.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            got, body = await _ready(http, url)
            if got == status:
                return body
            await asyncio.sleep(0.2)


async def test_readyz_names_redis_and_the_bus_while_redis_is_down(
    start_server: ServerFactory, demo_db: asyncpg.Pool, redis_prefix: str
) -> None:
    valkey = EmbeddedValkey(port=free_port()).start()
    try:
        server = await start_server(redis_url=valkey.url, env={"DROPTV_REDIS_PREFIX": redis_prefix})
        async with aiohttp.ClientSession() as http:
            body = await _until(http, server.url, 200)
            assert body["status"] == "ready" and body["not_ready"] == []
            assert body["checks"] == {
                "realtime": "ok",
                "postgres": "ok",
                "redis": "ok",
                "bus": "ok",
            }

            await asyncio.to_thread(valkey.stop)
            body = await _until(http, server.url, 503)
            assert body["status"] == "not_ready"
            assert "redis" in body["not_ready"] and body["checks"]["postgres"] == "ok"
            body = await _until(http, server.url, 503)  # the link notices within a ping or two
            async with asyncio.timeout(20):
                while "bus" not in body["not_ready"]:
                    await asyncio.sleep(0.2)
                    _, body = await _ready(http, server.url)
            async with http.get(server.url + "/healthz") as resp:
                assert resp.status == 200  # alive: do not restart it, it reconnects

            await asyncio.to_thread(valkey.start)
            body = await _until(http, server.url, 200, timeout=30)
            assert body["checks"]["bus"] == "ok"
    finally:
        valkey.stop()


async def test_readyz_names_postgres_while_the_database_refuses_connections(
    start_server: ServerFactory, demo_db: asyncpg.Pool, database_url: str
) -> None:
    server = await start_server(env={"DROPTV_PG_POOL_MIN": "1"})
    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin_url)
    try:
        async with aiohttp.ClientSession() as http:
            await _until(http, server.url, 200)
            await conn.execute(f"alter database {name} allow_connections false")
            await conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", name
            )
            body = await _until(http, server.url, 503)
            assert body["not_ready"] == ["postgres"]
            assert body["checks"]["postgres"] != "ok"
            await conn.execute(f"alter database {name} allow_connections true")
            await _until(http, server.url, 200)
    finally:
        await conn.execute(f"alter database {name} allow_connections true")
        await conn.close()


async def test_metrics_count_requests_by_route_template_and_status(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client()
    for _ in range(3):
        assert (await client.get("/creators/creator_001/channel/live")).status == 200
    assert (await client.get("/creators/nobody/channel/live")).status == 404
    assert (await client.get("/no/such/page")).status == 404
    text = await (await client.get("/metrics")).text()

    ok = {"method": "GET", "route": LIVE_ROUTE}
    assert total(text, "droptv_http_requests_total", **ok, status="200") == 3
    assert total(text, "droptv_http_requests_total", **ok, status="404") == 1
    assert total(text, "droptv_http_requests_total", route="unmatched", status="404") == 1
    assert total(text, "droptv_http_request_duration_seconds_count", **ok, status="200") == 3
    assert total(text, "droptv_http_request_duration_seconds_bucket", **ok, status="200", le="+Inf")
    routes = {labels["route"] for labels, _ in samples(text, "droptv_http_requests_total")}
    assert not any("creator_001" in r or "nobody" in r or "such" in r for r in routes), routes
    # The pool and the process.
    assert total(text, "droptv_db_pool_connections") >= 1
    assert total(text, "droptv_db_pool_max") == 20
    assert total(text, "droptv_db_pool_in_use") + total(text, "droptv_db_pool_idle") == total(
        text, "droptv_db_pool_connections"
    )
    assert total(text, "process_resident_memory_bytes") > 0
    assert total(text, "process_open_fds") > 0


async def test_metrics_need_the_bearer_token_when_one_is_set(
    make_client: AppClientFactory, demo_db: asyncpg.Pool
) -> None:
    client = await make_client(metrics_token="scrape-me")
    assert (await client.get("/metrics")).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.get("/metrics", headers=wrong)).status == 401
    right = {"Authorization": "Bearer scrape-me"}
    resp = await client.get("/metrics", headers=right)
    assert resp.status == 200 and "droptv_http_requests_total" in await resp.text()


def test_without_a_token_only_loopback_clients_may_scrape() -> None:
    """The rule itself: a non-loopback source cannot be produced on 127.0.0.1."""
    for remote in ("127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"):
        assert refusal(remote, "", "") is None, remote
    for remote in ("10.0.0.7", "192.168.1.2", "2001:db8::1", "::ffff:10.0.0.7", None, "junk"):
        assert refusal(remote, "", "") == 403, remote
    assert refusal("10.0.0.7", "Bearer t0k", "t0k") is None
    assert refusal("127.0.0.1", "", "t0k") == 401
    assert refusal("127.0.0.1", "t0k", "t0k") == 401


async def test_json_logs_one_object_per_line_with_the_request_id(
    start_server: ServerFactory, demo_db: asyncpg.Pool
) -> None:
    server = await start_server(env={"DROPTV_LOG_FORMAT": "json"})
    async with aiohttp.ClientSession() as http:
        headers = {"X-Request-Id": "readme-rid-42"}
        async with http.get(server.url + "/creators/creator_001/channel/live", headers=headers):
            pass
        async with http.get(server.url + "/creators/nobody/channel/live") as resp:
            generated = resp.headers["X-Request-Id"]
    assert server.terminate() == 0
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "droptv_live.access"]
    mine = next(r for r in access if r.get("request_id") == "readme-rid-42")
    assert mine["method"] == "GET" and mine["status"] == 200
    assert mine["path"] == "/creators/creator_001/channel/live" and mine["route"] == LIVE_ROUTE
    assert mine["duration_ms"] >= 0
    other = next(r for r in access if r.get("request_id") == generated)
    assert other["status"] == 404
    assert all(r.get("request_id") for r in access)


async def _scrape(http: aiohttp.ClientSession, server: ServerProcess) -> str:
    async with http.get(server.url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def test_workers_2_every_scrape_holds_both_workers_and_the_counts_add_up(
    start_server: ServerFactory, demo_db: asyncpg.Pool
) -> None:
    """`serve --workers 2`: whichever worker answers, one scrape sums the whole port."""
    server = await start_server(args=["--workers", "2"])
    fresh = aiohttp.TCPConnector(force_close=True)  # a new connection, so any worker, each time
    async with aiohttp.ClientSession(connector=fresh) as http:
        pids: set[int] = set()
        sent = 0
        async with asyncio.timeout(30):
            while len(pids) < 2 or sent < 10:
                async with http.get(server.url + "/creators/creator_001/channel/live") as resp:
                    assert resp.status == 200
                    sent += 1
                async with http.get(server.url + "/readyz") as resp:
                    assert resp.status == 200, await resp.text()
                    pids.add((await resp.json())["pid"])
        sid = await start_watch(http, server.url, "user_metrics")
        watcher = await Watcher.connect(http, server.ws_url, sid, "user_metrics")
        await watcher.next("hello")

        answered_by: set[str] = set()
        deadline = time.monotonic() + 30
        scrapes = 0
        while scrapes < 6 or len(answered_by) < 2:
            assert time.monotonic() < deadline, "scrapes never reached both workers"
            text = await _scrape(http, server)
            scrapes += 1
            assert total(text, "droptv_metrics_workers_merged") == 2
            assert total(text, "droptv_metrics_workers_missing") == 0
            workers = {
                labels["worker"] for labels, _ in samples(text, "process_start_time_seconds")
            }
            assert workers == {"0", "1"}
            route = {"route": LIVE_ROUTE, "status": "200"}
            assert total(text, "droptv_http_requests_total", **route) == sent
            assert total(text, "droptv_ws_sockets_open") == 1
            assert total(text, "droptv_ws_connects_total") == 1
            # Which worker answered: the one whose count of /metrics requests is one ahead.
            mine = samples(text, "droptv_http_requests_total", route="/metrics")
            answered_by |= {labels["worker"] for labels, _ in mine}
        await watcher.close()
