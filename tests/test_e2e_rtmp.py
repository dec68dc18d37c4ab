"""End to end with a real encoder: ffmpeg publishes over RTMP to a real nginx-rtmp-module.

nginx (Debian's nginx + libnginx-mod-rtmp) runs with a config of ours whose
on_publish / on_publish_done point at a real server process. ffmpeg pushes
a test pattern to rtmp://127.0.0.1:<port>/live/<ch_101's stream key>: the
channel goes live; a watcher joins; ffmpeg stops: the channel goes offline
and the watcher gets `stream` (is_live false) and close 4009. A wrong key is
refused by nginx itself (our 403) and changes nothing. Skipped when nginx, the
rtmp module or ffmpeg are not installed (`apt-get install nginx
libnginx-mod-rtmp ffmpeg`).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from store.embedded import free_port
from tests.conftest import ServerFactory, auth
from tests.wsutil import Watcher, start_watch

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
FFMPEG = shutil.which("ffmpeg")

pytestmark = pytest.mark.skipif(
    not (Path(NGINX).exists() and RTMP_MODULE.exists() and FFMPEG),
    reason="needs nginx, libnginx-mod-rtmp and ffmpeg (apt-get install nginx libnginx-mod-rtmp ffmpeg)",
)

CONF = """
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
load_module {module};
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        application live {{
            live on;
            record off;
            on_publish {api}/hooks/nginx-rtmp/publish;
            on_publish_done {api}/hooks/nginx-rtmp/publish_done;
        }}
    }}
}}
"""


async def _live(http: aiohttp.ClientSession, base: str) -> Any:
    async with http.get(f"{base}/creators/creator_001/channel/live") as resp:
        return (await resp.json())["data"]


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def _ffmpeg(url: str, log: Path) -> asyncio.subprocess.Process:
    """A test pattern pushed to `url` as an encoder would (FLV video, no audio)."""
    assert FFMPEG is not None
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            FFMPEG, "-hide_banner", "-loglevel", "warning", "-re",
            "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15",
            "-an", "-c:v", "flv", "-f", "flv", url,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.mark.timeout(90)
async def test_ffmpeg_through_nginx_rtmp_takes_the_channel_live_and_offline(
    start_server: ServerFactory, demo_db: asyncpg.Pool, tmp_path: Path
) -> None:
    server = await start_server()
    rtmp_port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        CONF.format(tmp=tmp_path, module=RTMP_MODULE, rtmp_port=rtmp_port, api=server.url)
    )
    nginx = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    encoders: list[asyncio.subprocess.Process] = []
    try:
        async with aiohttp.ClientSession() as http:
            admin = auth("ops", admin=True)
            async with http.get(f"{server.url}/admin/channels/ch_101/ingest", headers=admin) as r:
                key = (await r.json())["data"]["stream_key"]
            async with http.delete(f"{server.url}/admin/channels/ch_101/live", headers=admin) as r:
                assert r.status == 200
            assert (await _live(http, server.url))["is_live"] is False

            # A wrong key: nginx asks us, gets 403 and drops the publisher.
            wrong = await _ffmpeg(f"rtmp://127.0.0.1:{rtmp_port}/live/sk_wrong", tmp_path / "w.log")
            encoders.append(wrong)
            assert await asyncio.wait_for(wrong.wait(), 20) != 0
            assert (await _live(http, server.url))["is_live"] is False

            encoder = await _ffmpeg(f"rtmp://127.0.0.1:{rtmp_port}/live/{key}", tmp_path / "f.log")
            encoders.append(encoder)

            async def is_live() -> bool:
                return bool((await _live(http, server.url))["is_live"])

            await _until(is_live)
            sid = await start_watch(http, server.url, "rtmp_viewer")
            watcher = await Watcher.connect(http, server.ws_url, sid, "rtmp_viewer")
            hello = await watcher.next("hello")
            assert hello["stream"]["is_live"] is True and hello["token"]["token"]

            await _stop(encoder)  # the encoder disconnects: nginx calls on_publish_done
            off = await watcher.next("stream", timeout=15)
            assert off["is_live"] is False
            assert await watcher.wait_closed() == 4009
            assert (await _live(http, server.url))["is_live"] is False
    finally:
        for proc in encoders:
            await _stop(proc)
        await _stop(nginx)
