"""Per-channel sequence (epoch, seq) and the publisher lease, in Redis or in-process.

Sequencer. `seq` rises by one per channel event and is the same for every
instance because one atomic Lua script hands it out. `epoch` is a random
token created with the sequence: if Redis loses the state (restart, eviction,
expiry of an idle channel) the next call creates a new epoch and restarts seq
at 1, so clients can tell that numbers are not comparable any more. A seq is
never handed out twice within one epoch: the epoch is also renewed when only
the seq key vanished.

`next_if_changed` takes a seq only if a named value (e.g. the viewer count)
differs from the last one published under that name, atomically, so two
instances that briefly both think they hold the lease still publish a change
once, and a new lease holder knows what its predecessor last said.

Lease. `acquire` takes or renews (SET NX PX, or PEXPIRE if already ours);
`release` deletes only our own lease (compare-and-delete), so a holder that
lost the lease to a timeout cannot release its successor's.

Errors: every Redis failure surfaces as `StoreUnavailable`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

from redis.exceptions import RedisError

from store.errors import StoreUnavailable
from store.keys import STATE_TTL, Keys

__all__ = [
    "Change",
    "Leases",
    "LocalLeases",
    "LocalSequencer",
    "Position",
    "RedisLeases",
    "RedisSequencer",
    "Sequencer",
    "new_epoch",
]

# Names whose last published value is remembered for `next_if_changed`.
LAST_NAMES: Final = ("viewers", "epg")


@dataclass(frozen=True, slots=True)
class Position:
    epoch: str
    seq: int


@dataclass(frozen=True, slots=True)
class Change:
    """A seq taken for a changed value; `previous` is what was last published (None: nothing)."""

    epoch: str
    seq: int
    previous: str | None


def new_epoch() -> str:
    return secrets.token_hex(4)


class Sequencer(Protocol):
    async def current(self, channel: str) -> Position:
        """The latest seq handed out (0 before the first event of an epoch)."""
        ...

    async def next(self, channel: str) -> Position:
        """Take the next seq for one channel event."""
        ...

    async def next_if_changed(self, channel: str, name: str, value: str) -> Change | None:
        """Take the next seq only if `value` differs from the last one under `name`."""
        ...


class Leases(Protocol):
    async def acquire(self, channel: str, owner: str, ttl: float) -> bool:
        """Take or renew the channel's lease for `ttl` seconds; False if another owner holds it."""
        ...

    async def release(self, channel: str, owner: str) -> bool:
        """Give up the lease if `owner` holds it; True if it did."""
        ...

    async def holder(self, channel: str) -> str | None: ...


# --- in-process ---------------------------------------------------------------------------


class _LocalChannel:
    __slots__ = ("epoch", "last", "seq")

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.seq = 0
        self.last: dict[str, str] = {}


class LocalSequencer:
    """One process is the only instance: a dict, with the same contract as Redis."""

    def __init__(self) -> None:
        self._channels: dict[str, _LocalChannel] = {}

    def _get(self, channel: str) -> _LocalChannel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _LocalChannel()
        return state

    def reset(self, channel: str) -> None:
        """Forget a channel's state, as a Redis restart would (tests use it)."""
        self._channels.pop(channel, None)

    async def current(self, channel: str) -> Position:
        state = self._get(channel)
        return Position(state.epoch, state.seq)

    async def next(self, channel: str) -> Position:
        state = self._get(channel)
        state.seq += 1
        return Position(state.epoch, state.seq)

    async def next_if_changed(self, channel: str, name: str, value: str) -> Change | None:
        state = self._get(channel)
        previous = state.last.get(name)
        if previous == value:
            return None
        state.last[name] = value
        state.seq += 1
        return Change(state.epoch, state.seq, previous)


class LocalLeases:
    """Leases among owners in one process (several in-process apps share one object)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}

    async def acquire(self, channel: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        held = self._held.get(channel)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._held[channel] = (owner, now + ttl)
        return True

    async def release(self, channel: str, owner: str) -> bool:
        held = self._held.get(channel)
        if held is None or held[0] != owner:
            return False
        del self._held[channel]
        return True

    async def holder(self, channel: str) -> str | None:
        held = self._held.get(channel)
        if held is None or held[1] <= time.monotonic():
            return None
        return held[0]


# --- Redis ---------------------------------------------------------------------------------

# KEYS: epoch, seq, last:<name>... ; ARGV: fresh epoch, ttl ms, mode, [value, index of last key]
_SEQ_LUA: Final = """
local e = redis.call('GET', KEYS[1])
if (not e) or redis.call('EXISTS', KEYS[2]) == 0 then
  e = ARGV[1]
  redis.call('SET', KEYS[1], e, 'PX', ARGV[2])
  redis.call('SET', KEYS[2], 0, 'PX', ARGV[2])
  for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
end
local mode = ARGV[3]
local prev = false
if mode == 'change' then
  local k = KEYS[tonumber(ARGV[5])]
  prev = redis.call('GET', k)
  if prev == ARGV[4] then
    return {e, tonumber(redis.call('GET', KEYS[2])), prev, 0}
  end
  redis.call('SET', k, ARGV[4], 'PX', ARGV[2])
end
local s
if mode == 'cur' then
  s = tonumber(redis.call('GET', KEYS[2]))
else
  s = redis.call('INCR', KEYS[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {e, s, prev, 1}
"""

_ACQUIRE_LUA: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisSequencer:
    """`redis` is a redis.asyncio Redis or RedisCluster client (keys share a hash tag)."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self._keys = keys
        self._script = redis.register_script(_SEQ_LUA)

    async def _run(self, channel: str, mode: str, *extra: str) -> list[Any]:
        keys = [
            self._keys.epoch(channel),
            self._keys.seq(channel),
            *(self._keys.last(channel, n) for n in LAST_NAMES),
        ]
        try:
            result: list[Any] = await self._script(
                keys=keys, args=[new_epoch(), int(STATE_TTL * 1000), mode, *extra]
            )
        except (RedisError, OSError) as err:
            raise StoreUnavailable(f"redis: {err!r}") from err
        return result

    async def current(self, channel: str) -> Position:
        epoch, seq, _, _ = await self._run(channel, "cur")
        return Position(_text(epoch), int(seq))

    async def next(self, channel: str) -> Position:
        epoch, seq, _, _ = await self._run(channel, "next")
        return Position(_text(epoch), int(seq))

    async def next_if_changed(self, channel: str, name: str, value: str) -> Change | None:
        index = LAST_NAMES.index(name) + 3
        epoch, seq, previous, taken = await self._run(channel, "change", value, str(index))
        if not int(taken):
            return None
        return Change(_text(epoch), int(seq), None if previous is None else _text(previous))


class RedisLeases:
    def __init__(self, redis: Any, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._release = redis.register_script(_RELEASE_LUA)

    async def acquire(self, channel: str, owner: str, ttl: float) -> bool:
        try:
            got = await self._acquire(
                keys=[self._keys.lease(channel)], args=[owner, max(1, int(ttl * 1000))]
            )
        except (RedisError, OSError) as err:
            raise StoreUnavailable(f"redis: {err!r}") from err
        return bool(int(got))

    async def release(self, channel: str, owner: str) -> bool:
        try:
            done = await self._release(keys=[self._keys.lease(channel)], args=[owner])
        except (RedisError, OSError) as err:
            raise StoreUnavailable(f"redis: {err!r}") from err
        return bool(int(done))

    async def holder(self, channel: str) -> str | None:
        try:
            value = await self._redis.get(self._keys.lease(channel))
        except (RedisError, OSError) as err:
            raise StoreUnavailable(f"redis: {err!r}") from err
        return None if value is None else _text(value)
