"""Presence, one suite for both versions: in-process and Redis (a real Valkey).

What must hold for each: totals are exact sums of instance shares and live
REST pollers, `by_device` always sums to the total, a share or poller that
is not refreshed leaves within its ttl, and a session is never counted twice
as a socket and a poller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from store.embedded import EmbeddedValkey
from store.keys import Keys
from store.presence import LocalPresence, Presence
from store.presence_redis import RedisPresence
from store.redis_client import make_redis

TTL = 30.0
DEVICES = ("web", "ios", "android", "roku", "firetv", "appletv")


@pytest.fixture(params=["local", "redis"])
async def presence(
    request: pytest.FixtureRequest, valkey: EmbeddedValkey, redis_prefix: str
) -> AsyncIterator[Presence]:
    if request.param == "local":
        yield LocalPresence()
        return
    client = make_redis(valkey.url, cluster=False)
    try:
        yield RedisPresence(client, Keys(redis_prefix))
    finally:
        await client.aclose()


def zeros(**counts: int) -> dict[str, int]:
    return {device: counts.get(device, 0) for device in DEVICES}


async def test_shares_and_pollers_sum_exactly(presence: Presence) -> None:
    empty = await presence.counts("ch_a", ttl=TTL)
    assert (empty.total, empty.by_device) == (0, zeros())
    await presence.share("i1", "ch_a", {"web": 3, "ios": 1}, TTL)
    await presence.share("i2", "ch_a", {"web": 2, "roku": 4}, TTL)
    await presence.share("i2", "ch_b", {"web": 9}, TTL)  # another channel does not count
    await presence.poll("ch_a", "s1", "android", socket_instance=None, ttl=TTL)
    await presence.poll("ch_a", "s2", "web", socket_instance=None, ttl=TTL)
    await presence.poll(
        "ch_a", "s2", "web", socket_instance=None, ttl=TTL
    )  # a repeat is one poller
    counts = await presence.counts("ch_a", ttl=TTL)
    assert counts.by_device == zeros(web=6, ios=1, roku=4, android=1)
    assert counts.total == 12 == sum(counts.by_device.values())
    # A share is replaced, not added to.
    await presence.share("i1", "ch_a", {"web": 1}, TTL)
    assert (await presence.counts("ch_a", ttl=TTL)).total == 9
    await presence.drop_share("i2", "ch_a")
    assert (await presence.counts("ch_a", ttl=TTL)).by_device == zeros(web=2, android=1)


async def test_an_unrefreshed_share_leaves_within_its_ttl(presence: Presence) -> None:
    await presence.share("dead", "ch_a", {"web": 5}, 0.3)
    await presence.share("alive", "ch_a", {"ios": 2}, 5.0)
    assert (await presence.counts("ch_a", ttl=TTL)).total == 7
    await asyncio.sleep(0.5)
    counts = await presence.counts("ch_a", ttl=TTL)
    assert counts.by_device == zeros(ios=2)


async def test_pollers_count_while_they_heartbeat(presence: Presence) -> None:
    assert await presence.poll("ch_a", "quiet", "web", socket_instance=None, ttl=0.4)
    assert await presence.poll("ch_a", "busy", "ios", socket_instance=None, ttl=0.4)
    assert (await presence.counts("ch_a", ttl=0.4)).total == 2
    await asyncio.sleep(0.25)
    # A heartbeat within the ttl keeps it counted: not "counted again".
    assert not await presence.poll("ch_a", "busy", "ios", socket_instance=None, ttl=0.4)
    await asyncio.sleep(0.25)
    counts = await presence.counts("ch_a", ttl=0.4)
    assert counts.by_device == zeros(ios=1)
    # The quiet one's late heartbeat counts it again, and says so.
    assert await presence.poll("ch_a", "quiet", "web", socket_instance=None, ttl=0.4)
    await presence.unpoll("ch_a", "quiet")
    await presence.unpoll("ch_a", "busy")
    assert (await presence.counts("ch_a", ttl=0.4)).total == 0


async def test_a_session_is_a_socket_or_a_poller_never_both(presence: Presence) -> None:
    # POST watch: a poller; its socket joins on i1: counted in i1's share only.
    await presence.poll("ch_a", "s1", "web", socket_instance=None, ttl=TTL)
    await presence.share("i1", "ch_a", {"web": 1}, TTL, joined=["s1"])
    assert (await presence.counts("ch_a", ttl=TTL)).total == 1
    # A REST heartbeat of the same session while i1 holds its socket changes nothing.
    assert not await presence.poll("ch_a", "s1", "web", socket_instance="i1", ttl=TTL)
    assert (await presence.counts("ch_a", ttl=TTL)).total == 1
    # The socket drops: the session counts as a poller from now on.
    await presence.share("i1", "ch_a", {}, TTL, left=[("s1", "web")])
    await presence.drop_share("i1", "ch_a")
    assert (await presence.counts("ch_a", ttl=TTL)).by_device == zeros(web=1)
    # A heartbeat naming a socket instance that has no live share counts it as a poller.
    await presence.poll("ch_a", "s2", "roku", socket_instance="gone", ttl=TTL)
    assert (await presence.counts("ch_a", ttl=TTL)).by_device == zeros(web=1, roku=1)


async def test_a_poller_moves_device(presence: Presence) -> None:
    await presence.poll("ch_a", "s1", "web", socket_instance=None, ttl=TTL)
    await presence.poll("ch_a", "s1", "firetv", socket_instance=None, ttl=TTL)
    counts = await presence.counts("ch_a", ttl=TTL)
    assert (counts.total, counts.by_device) == (1, zeros(firetv=1))


async def test_concurrent_heartbeats_are_each_counted_once(presence: Presence) -> None:
    """Heartbeats arriving together (the Redis version sends them in one call) each count."""
    first = await asyncio.gather(
        *(presence.poll("ch_a", f"s{i}", "web", socket_instance=None, ttl=TTL) for i in range(20))
    )
    again = await asyncio.gather(
        *(presence.poll("ch_a", f"s{i}", "web", socket_instance=None, ttl=TTL) for i in range(20))
    )
    assert all(first) and not any(again)
    assert (await presence.counts("ch_a", ttl=TTL)).by_device == zeros(web=20)
