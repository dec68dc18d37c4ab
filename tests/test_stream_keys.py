"""Stream signing keys: per-channel versions, rotation, and the new token pushed to every watcher."""

from __future__ import annotations

import aiohttp
import asyncpg
import jwt
import pytest

from server.auth import key_id, mint_stream_token, verify_stream_token
from store.embedded import EmbeddedValkey
from tests.conftest import TEST_SECRET, ServerFactory, auth
from tests.wsutil import Watcher, admin, start_watch


def test_a_token_verifies_with_the_master_key_and_its_kid_only() -> None:
    minted = mint_stream_token(
        "master",
        channel_id="ch_101",
        key_version=3,
        stream_id="s",
        session_id="x",
        user_id="u",
        quality="720p",
        ttl=60,
    )
    assert jwt.get_unverified_header(minted.token)["kid"] == key_id("ch_101", 3)
    assert verify_stream_token("master", minted.token)["quality"] == "720p"
    assert verify_stream_token("master", minted.token, min_version=3)["sid"] == "x"
    with pytest.raises(jwt.InvalidTokenError):
        verify_stream_token("master", minted.token, min_version=4)
    with pytest.raises(jwt.InvalidSignatureError):
        verify_stream_token("other-master", minted.token)


async def test_rotation_pushes_a_new_token_to_watchers_on_every_instance(
    start_server: ServerFactory, valkey: EmbeddedValkey, redis_prefix: str, demo_db: asyncpg.Pool
) -> None:
    env = {"DROPTV_REDIS_PREFIX": redis_prefix, "DROPTV_SESSION_TTL": "5"}
    servers = [await start_server(redis_url=valkey.url, env=env) for _ in range(2)]
    async with aiohttp.ClientSession() as http:
        watchers = []
        for n, server in enumerate(servers):
            sid = await start_watch(http, server.url, f"user_k{n}")
            watchers.append(await Watcher.connect(http, server.ws_url, sid, f"user_k{n}"))
        for w in watchers:
            hello = await w.next("hello")
            assert jwt.get_unverified_header(hello["token"]["token"])["kid"] == "ch_101.v1"

        rotated = await admin(
            http, "POST", f"{servers[0].url}/admin/channels/ch_101/stream-key/rotate"
        )
        assert rotated == {"channel_id": "ch_101", "key_version": 2, "kid": "ch_101.v2"}
        for w in watchers:
            msg = await w.next("token", where=lambda m: m["reason"] == "rotation")
            claims = verify_stream_token(TEST_SECRET, msg["token"], min_version=2)
            assert claims["sid"] == w.session_id
        # REST on the rotating instance signs with the new key at once.
        async with http.get(
            f"{servers[0].url}/creators/creator_001/channel/live/heartbeat",
            params={"session_id": watchers[0].session_id},
            headers=auth("user_k0"),
        ) as resp:
            token = (await resp.json())["data"]["stream"]["token"]
        assert jwt.get_unverified_header(token)["kid"] == "ch_101.v2"
        for w in watchers:
            await w.close()


async def test_only_admins_and_the_creator_may_rotate(
    start_server: ServerFactory, demo_db: asyncpg.Pool
) -> None:
    server = await start_server()
    url = f"{server.url}/admin/channels/ch_101/stream-key/rotate"
    async with aiohttp.ClientSession() as http:
        async with http.post(url) as resp:
            assert resp.status == 401
        async with http.post(url, headers=auth("user_123")) as resp:
            assert resp.status == 403
        async with http.post(url, headers=auth("creator_001")) as resp:
            assert resp.status == 200 and (await resp.json())["data"]["key_version"] == 2
        async with http.post(
            f"{server.url}/admin/channels/nope/stream-key/rotate", headers=auth("ops", admin=True)
        ) as resp:
            assert resp.status == 404
