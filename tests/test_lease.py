"""Sequencer (epoch, seq) and publisher leases, in-process and on real Valkey."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from store.embedded import EmbeddedValkey
from store.keys import Keys
from store.lease import (
    Leases,
    LocalLeases,
    LocalSequencer,
    RedisLeases,
    RedisSequencer,
    Sequencer,
)


@dataclass
class Backend:
    """Two handles (two "instances") on one shared backend, and a way to lose its state."""

    kind: str
    seq_a: Sequencer
    seq_b: Sequencer
    leases_a: Leases
    leases_b: Leases
    redis: Any = None
    keys: Keys | None = None

    async def lose_state(self, channel: str) -> None:
        if self.kind == "local":
            assert isinstance(self.seq_a, LocalSequencer)
            self.seq_a.reset(channel)
        else:
            assert self.keys is not None
            await self.redis.delete(self.keys.epoch(channel), self.keys.seq(channel))


@pytest.fixture(params=["local", "redis"])
async def backend(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[Backend]:
    if request.param == "local":
        seq, leases = LocalSequencer(), LocalLeases()
        yield Backend("local", seq, seq, leases, leases)
        return
    valkey: EmbeddedValkey = request.getfixturevalue("valkey")
    keys = Keys(redis_prefix)
    a = aioredis.Redis.from_url(valkey.url)
    b = aioredis.Redis.from_url(valkey.url)
    yield Backend(
        "redis",
        RedisSequencer(a, keys),
        RedisSequencer(b, keys),
        RedisLeases(a, keys),
        RedisLeases(b, keys),
        redis=a,
        keys=keys,
    )
    await a.aclose()
    await b.aclose()


async def test_seq_is_shared_and_gapless(backend: Backend) -> None:
    first = await backend.seq_a.current("ch_1")
    assert first.seq == 0
    taken = await asyncio.gather(*(s.next("ch_1") for s in [backend.seq_a, backend.seq_b] * 10))
    assert sorted(p.seq for p in taken) == list(range(1, 21))
    assert {p.epoch for p in taken} == {first.epoch}
    assert await backend.seq_b.current("ch_1") == taken[0].__class__(first.epoch, 20)
    # Channels are independent.
    assert (await backend.seq_a.next("ch_2")).seq == 1


async def test_next_if_changed_takes_a_seq_only_on_change(backend: Backend) -> None:
    c1 = await backend.seq_a.next_if_changed("ch_1", "viewers", "10,12")
    assert c1 is not None and c1.seq == 1 and c1.previous is None
    assert await backend.seq_b.next_if_changed("ch_1", "viewers", "10,12") is None
    c2 = await backend.seq_b.next_if_changed("ch_1", "viewers", "11,12")
    assert c2 is not None and c2.seq == 2 and c2.previous == "10,12"
    # Another name does not interfere, plain events share the sequence.
    assert (await backend.seq_a.next("ch_1")).seq == 3
    c3 = await backend.seq_a.next_if_changed("ch_1", "epg", "p1|p2")
    assert c3 is not None and c3.seq == 4


async def test_lost_state_starts_a_new_epoch(backend: Backend) -> None:
    old = await backend.seq_a.next("ch_1")
    await backend.seq_a.next_if_changed("ch_1", "viewers", "5,5")
    await backend.lose_state("ch_1")
    new = await backend.seq_b.next("ch_1")
    assert new.epoch != old.epoch and new.seq == 1
    # The remembered value went with the old epoch: the same count is published again.
    again = await backend.seq_a.next_if_changed("ch_1", "viewers", "5,5")
    assert again is not None and again.epoch == new.epoch and again.previous is None


async def test_lost_seq_alone_also_renews_the_epoch(backend: Backend) -> None:
    if backend.kind == "local":
        pytest.skip("in-process state cannot lose one key")
    old = await backend.seq_a.next("ch_1")
    assert backend.keys is not None
    await backend.redis.delete(backend.keys.seq("ch_1"))
    new = await backend.seq_a.next("ch_1")
    assert new.epoch != old.epoch and new.seq == 1


async def test_lease_is_exclusive_renewable_and_released(backend: Backend) -> None:
    a, b = backend.leases_a, backend.leases_b
    assert await a.acquire("ch_1", "inst-a", 5.0)
    assert not await b.acquire("ch_1", "inst-b", 5.0)
    assert await a.acquire("ch_1", "inst-a", 5.0)  # renew
    assert await b.holder("ch_1") == "inst-a"
    assert not await b.release("ch_1", "inst-b")
    assert await a.release("ch_1", "inst-a")
    assert await b.acquire("ch_1", "inst-b", 5.0)
    assert await a.holder("ch_1") == "inst-b"


async def test_lease_expires_and_a_stale_holder_cannot_release_the_new_one(
    backend: Backend,
) -> None:
    a, b = backend.leases_a, backend.leases_b
    assert await a.acquire("ch_1", "inst-a", 0.2)
    await asyncio.sleep(0.35)
    assert await b.acquire("ch_1", "inst-b", 5.0)
    assert not await a.release("ch_1", "inst-a")
    assert not await a.acquire("ch_1", "inst-a", 5.0)
    assert await b.holder("ch_1") == "inst-b"
