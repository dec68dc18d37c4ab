"""Presence in Redis (or a Redis Cluster): instance shares and REST pollers per channel.

Keys of one channel share its hash tag (store.keys), so each operation is one
Lua call on one shard, timed by Redis's own clock (TIME), which every
instance shares:

    shares   ZSET  instance -> expiry (ms)        counts  HASH  instance -> "n,n,n,n,n,n"
    pollers  ZSET  per device: session -> last sign of life (ms)

`counts` first removes expired shares and pollers (O(expired), amortized),
then sums the live shares (O(instances)) and the pollers' set sizes. Every
Redis failure surfaces as `StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from redis.exceptions import RedisError

from protocol.values import DEVICE_TYPES
from store.errors import StoreUnavailable
from store.keys import Keys
from store.presence import NowCounts, device_counts

__all__ = ["RedisPresence"]

_NOW: Final = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# KEYS: shares, counts, pollers per device...; ARGV: instance, ttl ms, encoded counts,
# poller key ttl ms, n joined, joined sessions..., then (session, device index) pairs of left
_SHARE_LUA: Final = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local joined = tonumber(ARGV[5])
for j = 6, 5 + joined do
  for i = 3, #KEYS do redis.call('ZREM', KEYS[i], ARGV[j]) end
end
for j = 6 + joined, #ARGV, 2 do
  local k = KEYS[2 + tonumber(ARGV[j + 1])]
  redis.call('ZADD', k, now, ARGV[j])
  redis.call('PEXPIRE', k, ARGV[4])
end
return 1
"""
)

# KEYS: shares, counts; ARGV: instance
_DROP_LUA: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# KEYS: shares, pollers per device...; ARGV: session, device index (1-based), socket instance
# or '', key ttl ms
_POLL_LUA: Final = (
    _NOW
    + """
local k = KEYS[1 + tonumber(ARGV[2])]
if (not redis.call('ZSCORE', k, ARGV[1])) and ARGV[3] ~= '' then
  local expires = redis.call('ZSCORE', KEYS[1], ARGV[3])
  if expires and tonumber(expires) > now then return 0 end
end
for i = 2, #KEYS do
  if KEYS[i] ~= k then redis.call('ZREM', KEYS[i], ARGV[1]) end
end
redis.call('ZADD', k, now, ARGV[1])
redis.call('PEXPIRE', k, ARGV[4])
return 1
"""
)

# KEYS: pollers per device...; ARGV: session
_UNPOLL_LUA: Final = """
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""

# KEYS: shares, counts, pollers per device...; ARGV: poller ttl ms
_COUNTS_LUA: Final = (
    _NOW
    + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #dead do
  redis.call('ZREM', KEYS[1], dead[i])
  redis.call('HDEL', KEYS[2], dead[i])
end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local shares = {}
if #live > 0 then shares = redis.call('HMGET', KEYS[2], unpack(live)) end
local polled = {}
for i = 3, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - tonumber(ARGV[1]))
  polled[#polled + 1] = redis.call('ZCARD', KEYS[i])
end
return {shares, polled}
"""
)


def _encode(by_device: Mapping[str, int]) -> str:
    return ",".join(str(int(by_device.get(device, 0))) for device in DEVICE_TYPES)


def _device_index(device: str) -> int:
    """1-based position among the poller keys; an unknown device counts as the first."""
    return DEVICE_TYPES.index(device) + 1 if device in DEVICE_TYPES else 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisPresence:
    """`redis` is a redis.asyncio Redis or RedisCluster client (a channel's keys share a slot)."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self._keys = keys
        self._share = redis.register_script(_SHARE_LUA)
        self._drop = redis.register_script(_DROP_LUA)
        self._poll = redis.register_script(_POLL_LUA)
        self._unpoll = redis.register_script(_UNPOLL_LUA)
        self._counts = redis.register_script(_COUNTS_LUA)

    def _pollers(self, channel: str) -> list[str]:
        return [self._keys.pollers(channel, device) for device in DEVICE_TYPES]

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as err:
            raise StoreUnavailable(f"redis presence: {err!r}") from err

    async def share(
        self,
        instance_id: str,
        channel: str,
        by_device: Mapping[str, int],
        ttl: float,
        *,
        joined: Sequence[str] = (),
        left: Sequence[tuple[str, str]] = (),
    ) -> None:
        pairs: list[Any] = []
        for session_id, device in left:
            pairs += [session_id, _device_index(device)]
        await self._run(
            self._share,
            [self._keys.shares(channel), self._keys.share_counts(channel), *self._pollers(channel)],
            [
                instance_id,
                max(1, int(ttl * 1000)),
                _encode(by_device),
                self._keys.poller_key_ttl_ms,
                len(joined),
                *joined,
                *pairs,
            ],
        )

    async def drop_share(self, instance_id: str, channel: str) -> None:
        await self._run(
            self._drop,
            [self._keys.shares(channel), self._keys.share_counts(channel)],
            [instance_id],
        )

    async def poll(
        self, channel: str, session_id: str, device: str, *, socket_instance: str | None
    ) -> None:
        await self._run(
            self._poll,
            [self._keys.shares(channel), *self._pollers(channel)],
            [
                session_id,
                _device_index(device),
                socket_instance or "",
                self._keys.poller_key_ttl_ms,
            ],
        )

    async def unpoll(self, channel: str, session_id: str) -> None:
        await self._run(self._unpoll, self._pollers(channel), [session_id])

    async def counts(self, channel: str, *, ttl: float) -> NowCounts:
        shares, polled = await self._run(
            self._counts,
            [self._keys.shares(channel), self._keys.share_counts(channel), *self._pollers(channel)],
            [max(1, int(ttl * 1000))],
        )
        found = dict.fromkeys(DEVICE_TYPES, 0)
        for share in shares:
            if share is None:
                continue
            for device, n in zip(DEVICE_TYPES, _text(share).split(","), strict=False):
                found[device] += int(n)
        for device, n in zip(DEVICE_TYPES, polled, strict=True):
            found[device] += int(n)
        return device_counts(found)
