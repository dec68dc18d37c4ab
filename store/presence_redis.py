"""Presence in Redis (or a Redis Cluster): instance shares and REST pollers per channel.

Keys of one channel share its hash tag (store.keys), so each operation is one
Lua call on one shard, timed by Redis's own clock (TIME), which every
instance shares:

    shares   ZSET  instance -> expiry (ms)        counts  HASH  instance -> "n,n,n,n,n,n"
    pollers  ZSET  per device: session -> last sign of life (ms)

`counts` first removes expired shares and pollers (O(expired), amortized),
then sums the live shares (O(instances)) and the pollers' set sizes. The
heartbeats of one channel that arrive in the same loop turn share one `poll`
call. Every Redis failure surfaces as `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
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

# KEYS: shares, pollers per device...; ARGV: key ttl ms, poller ttl ms, then per heartbeat
# (session, device index 1-based, socket instance or ''). Returns per heartbeat 1 when the
# session counts again (it was no poller seen within the ttl), else 0.
_POLL_LUA: Final = (
    _NOW
    + """
local out = {}
for j = 3, #ARGV, 3 do
  local session, k = ARGV[j], KEYS[1 + tonumber(ARGV[j + 1])]
  local seen = redis.call('ZSCORE', k, session)
  local held = false
  if (not seen) and ARGV[j + 2] ~= '' then
    local expires = redis.call('ZSCORE', KEYS[1], ARGV[j + 2])
    held = expires and tonumber(expires) > now
  end
  if held then
    out[#out + 1] = 0
  else
    local moved = 0
    for i = 2, #KEYS do
      if KEYS[i] ~= k then moved = moved + redis.call('ZREM', KEYS[i], session) end
    end
    redis.call('ZADD', k, now, session)
    redis.call('PEXPIRE', k, ARGV[1])
    if (not seen and moved == 0) or (seen and tonumber(seen) <= now - tonumber(ARGV[2])) then
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
end
return out
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


# A queued heartbeat: session, device index, socket instance or "", the caller's future.
_Poll = tuple[str, int, str, "asyncio.Future[bool]"]


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
        # Heartbeats waiting for this loop turn's poll call, per (channel, ttl).
        self._polls: dict[tuple[str, float], list[_Poll]] = {}
        self._poll_tasks: set[asyncio.Task[None]] = set()

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
        self,
        channel: str,
        session_id: str,
        device: str,
        *,
        socket_instance: str | None,
        ttl: float,
    ) -> bool:
        """Heartbeats of one channel that arrive in the same loop turn share one Lua call."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        queue = self._polls.setdefault((channel, ttl), [])
        queue.append((session_id, _device_index(device), socket_instance or "", future))
        if len(queue) == 1:
            loop.call_soon(self._send_polls, channel, ttl)
        return await future

    def _send_polls(self, channel: str, ttl: float) -> None:
        queue = self._polls.pop((channel, ttl), [])
        task = asyncio.get_running_loop().create_task(self._run_polls(channel, ttl, queue))
        self._poll_tasks.add(task)
        task.add_done_callback(self._poll_tasks.discard)

    async def _run_polls(self, channel: str, ttl: float, queue: list[_Poll]) -> None:
        args: list[Any] = [self._keys.poller_key_ttl_ms, max(1, int(ttl * 1000))]
        for session_id, index, holder, _ in queue:
            args += [session_id, index, holder]
        try:
            counted = await self._run(
                self._poll, [self._keys.shares(channel), *self._pollers(channel)], args
            )
        except BaseException as err:
            failure = err if isinstance(err, Exception) else StoreUnavailable("polls cancelled")
            for *_, future in queue:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(err, Exception):
                raise
            return
        for (*_, future), flag in zip(queue, counted, strict=True):
            if not future.done():
                future.set_result(bool(int(flag)))

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
