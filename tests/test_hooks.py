"""Go-live from the encoder: stream keys (admin routes) and the nginx-rtmp, SRS and MediaMTX hooks.

Each hook is called with its media server's own request shape (form-encoded
for nginx-rtmp, JSON for SRS and MediaMTX), against the real app on a
loopback port with the demo world: ch_101 (creator_001) is live with a
watcher's socket open, ch_103 (creator_003) is offline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import AppClientFactory, auth
from tests.wsutil import Watcher, start_watch


class Env:
    def __init__(self, client: TestClient[Any, Any], http: aiohttp.ClientSession) -> None:
        self.http = http
        self.base = str(client.make_url("")).rstrip("/")

    async def ingest(self, channel: str = "ch_101", user: str = "ops", admin: bool = True) -> Any:
        async with self.http.get(
            f"{self.base}/admin/channels/{channel}/ingest", headers=auth(user, admin=admin)
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return body["data"]

    async def rotate(self, channel: str = "ch_101") -> Any:
        async with self.http.post(
            f"{self.base}/admin/channels/{channel}/ingest/rotate", headers=auth("ops", admin=True)
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return body["data"]

    async def live(self, creator: str = "creator_001") -> Any:
        async with self.http.get(f"{self.base}/creators/{creator}/channel/live") as resp:
            return (await resp.json())["data"]

    async def form(self, path: str, **fields: str) -> tuple[int, Any]:
        """POST form-encoded, as nginx-rtmp-module does."""
        async with self.http.post(f"{self.base}{path}", data=fields) as resp:
            assert resp.content_type == "application/json"
            return resp.status, await resp.json()

    async def json(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.post(f"{self.base}{path}", json=body) as resp:
            return resp.status, await resp.json()

    async def watch(self, user: str = "user_123") -> Watcher:
        sid = await start_watch(self.http, self.base, user)
        w = await Watcher.connect(self.http, self.base.replace("http://", "ws://"), sid, user)
        await w.next("hello")
        return w


@pytest.fixture
async def env(make_client: AppClientFactory, demo_db: asyncpg.Pool) -> AsyncIterator[Env]:
    client = await make_client()
    async with aiohttp.ClientSession() as http:
        yield Env(client, http)


def nginx_fields(call: str, key: str) -> dict[str, str]:
    """What nginx-rtmp-module's on_publish / on_publish_done POST (ngx_rtmp_notify_module)."""
    return {
        "app": "live",
        "flashver": "FMLE/3.0 (compatible; FMSc/1.0)",
        "swfurl": "",
        "tcurl": "rtmp://127.0.0.1:1935/live",
        "pageurl": "",
        "addr": "127.0.0.1",
        "clientid": "7",
        "call": call,
        "name": key,
        "type": "live",
    }


def srs_body(action: str, stream: str, *, param: str = "", client_id: Any = "3bl8p29j") -> Any:
    """An SRS 5 http_hooks body (client_id was a number before SRS 4)."""
    return {
        "server_id": "vid-0xk989d",
        "service_id": "plw4a5w6",
        "action": action,
        "client_id": client_id,
        "ip": "127.0.0.1",
        "vhost": "__defaultVhost__",
        "app": "live",
        "tcUrl": "rtmp://127.0.0.1:1935/live",
        "stream": stream,
        "param": param,
        "stream_url": f"/live/{stream}",
        "stream_id": "vid-n7q8i5k",
    }


def mediamtx_auth(action: str, path: str, query: str = "", password: str = "") -> Any:
    """MediaMTX's authHTTPAddress request body."""
    return {
        "user": "",
        "password": password,
        "token": "",
        "ip": "127.0.0.1",
        "action": action,
        "path": path,
        "protocol": "rtmp",
        "id": None,
        "query": query,
    }


async def test_ingest_shows_a_secret_key_and_rotates_it(env: Env) -> None:
    first = await env.ingest()
    assert first["channel_id"] == "ch_101" and first["stream_key"].startswith("sk_")
    assert len(first["stream_key"]) == 43  # sk_ + 160 bits in hex
    assert first["rtmp_url"] == "rtmp://localhost:1935/live"
    assert first["publish_url"] == f"rtmp://localhost:1935/live/{first['stream_key']}"
    assert first["is_live"] is True
    assert (await env.ingest())["stream_key"] == first["stream_key"]  # stable until rotated
    own = await env.ingest("ch_101", "creator_001", admin=False)  # the creator's own token
    assert own["stream_key"] == first["stream_key"]
    rotated = await env.rotate()
    assert rotated["stream_key"] != first["stream_key"]
    assert (await env.ingest())["stream_key"] == rotated["stream_key"]
    other = await env.ingest("ch_103")
    assert other["stream_key"] not in (first["stream_key"], rotated["stream_key"])


async def test_ingest_refusals(env: Env) -> None:
    url = f"{env.base}/admin/channels/ch_101/ingest"
    async with env.http.get(url) as resp:
        assert resp.status == 401
    async with env.http.get(url, headers=auth("user_123")) as resp:
        assert resp.status == 403
    async with env.http.post(url + "/rotate", headers=auth("creator_002")) as resp:
        assert resp.status == 403
    async with env.http.get(
        f"{env.base}/admin/channels/ch_nope/ingest", headers=auth("ops", admin=True)
    ) as resp:
        assert resp.status == 404 and (await resp.json())["field"] == "channel_id"


async def test_nginx_rtmp_publish_done_and_publish(env: Env) -> None:
    key = (await env.ingest())["stream_key"]
    watcher = await env.watch()
    done, publish = "/hooks/nginx-rtmp/publish_done", "/hooks/nginx-rtmp/publish"
    # A wrong key is refused (4xx: nginx drops the publisher) and changes nothing.
    status, body = await env.form(done, **nginx_fields("publish_done", "sk_" + "0" * 40))
    assert status == 403 and body["field"] == "stream_key"
    status, body = await env.form(publish, **nginx_fields("publish", "wrong"))
    assert status == 403
    assert (await env.live())["is_live"] is True and not watcher.closed
    # The encoder stops: offline, the watcher is told and closed with 4009.
    status, body = await env.form(done, **nginx_fields("publish_done", key))
    assert status == 200 and body["data"]["reason"] == "ended"
    assert body["data"]["stream_id"] == "stream_abc123"
    assert (await watcher.next("stream"))["is_live"] is False
    assert (await watcher.next("session"))["reason"] == "stream_offline"
    assert await watcher.wait_closed() == 4009
    status, body = await env.form(done, **nginx_fields("publish_done", key))
    assert status == 200 and body["data"]["reason"] == "already offline"
    # The encoder connects: 2xx lets nginx accept it, and the channel is live on a new stream.
    status, body = await env.form(publish, **nginx_fields("publish", key))
    assert status == 200 and body["data"]["reason"] == "started"
    stream_id = body["data"]["stream_id"]
    assert stream_id.startswith("stream_") and stream_id != "stream_abc123"
    live = await env.live()
    assert live["is_live"] is True and live["channel"]["stream"]["stream_id"] == stream_id
    assert live["channel"]["stream"]["title"] == "Behind the Laughs"  # the program on air
    # A repeat (nginx retries, a reconnecting encoder) starts nothing new.
    status, body = await env.form(publish, **nginx_fields("publish", key))
    assert status == 200
    assert body["data"] == {**body["data"], "reason": "already live", "stream_id": stream_id}
    fresh = await env.watch()
    hello = fresh.of_type("hello")[0]
    assert hello["stream"]["stream_id"] == stream_id and hello["token"]["token"]
    await fresh.close()


async def test_a_rotated_key_cannot_publish_but_can_end_its_broadcast(env: Env) -> None:
    old = (await env.ingest())["stream_key"]
    new = (await env.rotate())["stream_key"]
    status, _ = await env.form("/hooks/nginx-rtmp/publish", **nginx_fields("publish", old))
    assert status == 403
    status, body = await env.form(
        "/hooks/nginx-rtmp/publish_done", **nginx_fields("publish_done", old)
    )
    assert status == 200 and body["data"]["reason"] == "ended"
    status, body = await env.form("/hooks/nginx-rtmp/publish", **nginx_fields("publish", new))
    assert status == 200 and body["data"]["reason"] == "started"


async def test_nginx_rtmp_without_a_name_is_422(env: Env) -> None:
    fields = nginx_fields("publish", "x")
    del fields["name"]
    status, body = await env.form("/hooks/nginx-rtmp/publish", **fields)
    assert status == 422 and body["field"] == "name"


async def test_srs_hooks(env: Env) -> None:
    key = (await env.ingest("ch_103"))["stream_key"]
    assert (await env.live("creator_003"))["is_live"] is False
    # Actions other than publish/unpublish are allowed and change nothing (one URL for all).
    for action in ("on_connect", "on_play", "on_stop", "on_close", "on_dvr"):
        status, body = await env.json("/hooks/srs", srs_body(action, key))
        assert status == 200 and body["code"] == 0
    assert (await env.live("creator_003"))["is_live"] is False
    status, body = await env.json("/hooks/srs", srs_body("on_publish", "sk_bad"))
    assert status == 403 and body["code"] != 0
    assert (await env.live("creator_003"))["is_live"] is False
    status, body = await env.json("/hooks/srs", srs_body("on_publish", key))
    assert status == 200 and body == {"code": 0, "msg": "started"}
    assert (await env.live("creator_003"))["is_live"] is True
    # SRS 3 sent client_id as a number; a repeat is idempotent.
    status, body = await env.json("/hooks/srs", srs_body("on_publish", key, client_id=107))
    assert status == 200 and body["msg"] == "already live"
    status, body = await env.json("/hooks/srs", srs_body("on_unpublish", key))
    assert status == 200 and body == {"code": 0, "msg": "ended"}
    assert (await env.live("creator_003"))["is_live"] is False
    # The key may also travel as ?key= in the stream's parameters.
    status, body = await env.json(
        "/hooks/srs", srs_body("on_publish", "livestream", param=f"?key={key}&vhost=x")
    )
    assert status == 200 and body["code"] == 0
    assert (await env.live("creator_003"))["is_live"] is True
    status, body = await env.json("/hooks/srs", {"stream": key})
    assert status == 422 and body["field"] == "action"


async def test_mediamtx_auth_ready_and_not_ready(env: Env) -> None:
    key = (await env.ingest("ch_103"))["stream_key"]
    auth_url = "/hooks/mediamtx/auth"
    status, _ = await env.json(auth_url, mediamtx_auth("publish", "live/sk_nope"))
    assert status == 401
    status, body = await env.json(auth_url, mediamtx_auth("publish", f"live/{key}"))
    assert status == 200 and body["data"]["channel_id"] == "ch_103"
    # Auth only checks: the channel goes live once media flows (runOnReady).
    assert (await env.live("creator_003"))["is_live"] is False
    status, _ = await env.json(auth_url, mediamtx_auth("publish", "live", f"key={key}"))
    assert status == 200
    status, _ = await env.json(auth_url, mediamtx_auth("publish", "live", "", key))
    assert status == 200  # the key as the publisher's password
    status, _ = await env.json(auth_url, mediamtx_auth("read", "live/anything"))
    assert status == 200
    status, _ = await env.json(auth_url, mediamtx_auth("api", ""))
    assert status == 401
    status, body = await env.json("/hooks/mediamtx/ready", {"path": f"live/{key}", "query": ""})
    assert status == 200 and body["data"]["reason"] == "started"
    assert (await env.live("creator_003"))["is_live"] is True
    status, body = await env.json("/hooks/mediamtx/ready", {"path": f"live/{key}"})
    assert body["data"]["reason"] == "already live"
    status, _ = await env.json("/hooks/mediamtx/not-ready", {"path": "live/sk_nope"})
    assert status == 403
    assert (await env.live("creator_003"))["is_live"] is True
    status, body = await env.json("/hooks/mediamtx/not-ready", {"path": f"live/{key}"})
    assert status == 200 and body["data"]["reason"] == "ended"
    assert (await env.live("creator_003"))["is_live"] is False


async def test_watchers_see_hook_go_live_as_from_the_admin_api(env: Env) -> None:
    """Offline through a hook ends sockets with 4009; the new stream gives new tokens."""
    key = (await env.ingest())["stream_key"]
    watcher = await env.watch()
    status, _ = await env.json("/hooks/srs", srs_body("on_unpublish", key))
    assert status == 200
    assert (await watcher.next("stream"))["is_live"] is False
    assert await watcher.wait_closed() == 4009
    status, _ = await env.json("/hooks/srs", srs_body("on_publish", key))
    assert status == 200
    again = await env.watch("user_vip")
    hello = again.of_type("hello")[0]
    assert hello["stream"]["is_live"] is True and hello["token"]["stream_url"].endswith(".m3u8")
    await again.close()


async def test_seed_demo_prints_the_stream_key_of_ch_101(
    database_url: str, db: asyncpg.Pool
) -> None:
    """`droptv-live seed --demo` (and a first `serve`) tells the operator what to publish with."""
    import asyncio
    import sys

    from tests.conftest import ROOT

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "seed", "--demo", "--database-url", database_url,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    key = await db.fetchval("select stream_key from ingest_keys where channel_id = 'ch_101'")
    assert f"ch_101 stream key: {key}" in text
    assert f"rtmp://localhost:1935/live/{key}" in text
