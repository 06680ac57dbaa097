"""The Redis client every cluster piece uses: one server (redis://, rediss://, unix://) or a
Sentinel-managed master (redis+sentinel://).

Every command runs exactly once (docs/library-facts.md: a retried PUBLISH duplicates, a retried SET NX
reads as failure), whichever form the URL has. Under Sentinel each new connection asks the
sentinels where the master is now, so a connection lost to a failover (the old master dies,
or answers READONLY once demoted: redis-py turns that into a ConnectionError and drops the
connection) is replaced by one to the promoted replica: the election's next pass and the
bus's resubscribe loop follow a promotion without any code of their own.
"""
from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from pricefeed.redis_urls import SENTINEL_SCHEME, parse_sentinel_url


def _once(timeout: float) -> dict:
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0)}


def redis_client(url: str, timeout: float = 1.0, sentinel_username: str | None = None,
                 sentinel_password: str | None = None) -> redis.Redis:
    """A client for `url` whose commands run exactly once; Sentinel URLs follow the current master."""
    if not url.startswith(SENTINEL_SCHEME + ":"):
        return redis.Redis.from_url(url, health_check_interval=0, **_once(timeout))
    parsed = parse_sentinel_url(url)
    sentinel = Sentinel(list(parsed.sentinels),
                        sentinel_kwargs=dict(_once(timeout), username=sentinel_username,
                                             password=sentinel_password))
    return sentinel.master_for(parsed.master, db=parsed.db, username=parsed.username,
                               password=parsed.password, health_check_interval=0, **_once(timeout))


def command_client(url: str, timeout: float = 1.0) -> redis.Redis:
    """A client whose commands run exactly once (kept for callers of the single-server form)."""
    return redis_client(url, timeout)
