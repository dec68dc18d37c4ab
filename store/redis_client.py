"""The Redis command client every instance uses: bounded, fail-fast, cluster-aware.

Short timeouts and two quick retries, so a dead Redis fails fast. The
connection pool is bounded and *blocking*: a burst of commands (a reconnect
storm's joins) queues for at most POOL_WAIT seconds for one of
MAX_CONNECTIONS connections instead of failing at once or opening a
connection per command.
"""

from __future__ import annotations

from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

__all__ = ["MAX_CONNECTIONS", "make_redis"]

MAX_CONNECTIONS: Final = 64
POOL_WAIT: Final = 5.0


def make_redis(url: str, *, cluster: bool = False) -> Any:
    """A redis.asyncio client for `url` (RedisCluster when `cluster`)."""
    options: dict[str, Any] = {
        "socket_timeout": 5.0,
        "socket_connect_timeout": 2.0,
        "socket_keepalive": True,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    }
    if cluster:
        # Per node; the cluster client queues for a free connection itself.
        return RedisCluster.from_url(url, max_connections=MAX_CONNECTIONS, **options)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT, **options
    )
    # from_pool: the client owns the pool, so aclose() closes its connections too.
    return aioredis.Redis.from_pool(pool)
