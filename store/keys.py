"""Redis names and TTLs, all under one prefix (Settings.redis_prefix; tests use one per test).

Every per-channel name carries the channel id as a Redis Cluster hash tag
(`{ch_101}`), so a channel's sequence, epoch, lease and sharded pub/sub
channel live on one shard and a Lua script may touch them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The publisher lease of a channel: the holder originates periodic events
# (viewers, EPG boundaries). Another instance takes over within LEASE_TTL of
# the holder's death; the holder renews every LEASE_RENEW.
LEASE_TTL: Final = 3.0
LEASE_RENEW: Final = 1.0
# Sequence, epoch and last-published values of a channel; refreshed on every
# use, so only an idle channel's state expires (its next event starts a new epoch).
STATE_TTL: Final = 7 * 24 * 3600.0
# The bus pings its subscriber links this often; a link silent for two
# intervals is considered dead and reconnected.
BUS_PING_INTERVAL: Final = 5.0
# Reconnect back-off of the bus: doubles from MIN to MAX, with jitter.
BUS_BACKOFF_MIN: Final = 0.05
BUS_BACKOFF_MAX: Final = 2.0
# A channel's poller sets expire as a whole after this long without any heartbeat.
POLLERS_KEY_TTL: Final = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def _channel(self, channel: str, what: str) -> str:
        return f"{self.prefix}:{{{channel}}}:{what}"

    def seq(self, channel: str) -> str:
        return self._channel(channel, "seq")

    def epoch(self, channel: str) -> str:
        return self._channel(channel, "epoch")

    def last(self, channel: str, name: str) -> str:
        """The last value published under `name` (e.g. viewers), for change detection."""
        return self._channel(channel, f"last:{name}")

    def lease(self, channel: str) -> str:
        return self._channel(channel, "lease")

    def shares(self, channel: str) -> str:
        """Presence: instance -> expiry of its share (ZSET, ms on Redis's clock)."""
        return self._channel(channel, "pres:shares")

    def share_counts(self, channel: str) -> str:
        """Presence: instance -> its per-device socket counts (HASH)."""
        return self._channel(channel, "pres:counts")

    def pollers(self, channel: str, device: str) -> str:
        """Presence: REST-polling session -> last sign of life (ZSET per device)."""
        return self._channel(channel, f"pres:poll:{device}")

    @property
    def poller_key_ttl_ms(self) -> int:
        return int(POLLERS_KEY_TTL * 1000)

    def bus(self, channel: str) -> str:
        """The pub/sub (or sharded pub/sub) channel carrying the channel's events."""
        return self._channel(channel, "bus")

    def bus_channel_of(self, name: str) -> str | None:
        """Inverse of `bus`: the channel id of a pub/sub name, None if not ours."""
        head = f"{self.prefix}:{{"
        if not (name.startswith(head) and name.endswith("}:bus")):
            return None
        return name[len(head) : -len("}:bus")]
