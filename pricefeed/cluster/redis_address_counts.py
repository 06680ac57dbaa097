"""RedisAddressCounts: per-address counts (streams) for the whole deployment, in Redis.

Each worker keeps what it holds in a hash of its own, `{prefix}:addr:{kind}:w:{worker}`
(address → count), and is listed in a sorted set `{prefix}:addr:{kind}:workers` with the time
its listing expires (Redis's own clock) as the score. Its heartbeat (`refresh`, every
REFRESH_SECONDS) pushes that time on; a worker killed with SIGKILL stops pushing, and its
counts stop counting TTL_SECONDS later at most — no one has to clean up after it, and
nothing leaks (the hash itself expires a moment after its listing).

Opening a stream is one script (ACQUIRE): drop the expired listings, add up the address's
count over every live worker's hash, and take one for this worker if the sum is below the
cap — atomically, so neither streams opened one after another nor a burst of them at once,
on any number of workers and hosts, ever pass the cap: the overshoot bound is zero. Its cost
is one round trip and O(live workers) hash reads inside Redis (microseconds for tens of
workers). Closing is one HINCRBY-like script (RELEASE). Neither is retried (docs/library-facts.md):
a release that fails leaves this worker's hash high, which can only refuse too early, and the
next refresh rewrites the hash from the worker's own counts (`resync`), as it does after any
failure. Nothing here runs per tick.

The scripts read hashes they are not passed as KEYS: fine on one Redis or under Sentinel,
not on Redis Cluster (which pricefeed does not support).
"""
from __future__ import annotations

from typing import Callable, Mapping

import redis

TTL_SECONDS = 5.0
REFRESH_SECONDS = 1.0
# The hash outlives its listing by this much: while listed, a worker's counts are always there.
HASH_GRACE_MS = 2000

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# KEYS: workers zset, this worker's hash. ARGV: worker, address, cap (-1: none), hash key prefix.
# Returns {1, count after} when taken, {0, count} when at the cap, {-1, 0} when this worker's
# listing has lapsed (its hash may be gone: it must resync before it counts again).
ACQUIRE = _NOW_MS + """
local listed = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not listed or tonumber(listed) <= now then return {-1, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local total = 0
for _, worker in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  total = total + (tonumber(redis.call('HGET', ARGV[4] .. worker, ARGV[2])) or 0)
end
local cap = tonumber(ARGV[3])
if cap >= 0 and total >= cap then return {0, total} end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return {1, total + 1}
"""

# KEYS: this worker's hash. ARGV: address.
RELEASE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS: workers zset, this worker's hash. ARGV: worker, ttl ms, resync (1/0), then address, count, ...
# Without resync it only extends a listing that is still current (returns 0 if it had lapsed:
# the caller resyncs). With resync the hash is rewritten from the worker's own counts.
REFRESH = _NOW_MS + """
local ttl = tonumber(ARGV[2])
if ARGV[3] ~= '1' then
  local listed = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not listed or tonumber(listed) <= now then return 0 end
else
  redis.call('DEL', KEYS[2])
  for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl + %d)
redis.call('PEXPIRE', KEYS[1], ttl + %d)
return 1
""" % (HASH_GRACE_MS, HASH_GRACE_MS)

# The address's share of the admission gate, for the deployment: one GCRA per address whose
# state is when its queue would be empty (µs on Redis's clock), expiring once that has passed.
# KEYS: the address's key. ARGV: interval µs, burst, max wait µs. Returns {1, wait µs} (taken) or
# {0, wait µs} (refused: the wait would pass the maximum).
RATE = """local t = redis.call('TIME') local now = t[1] * 1000000 + t[2]
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - (tonumber(ARGV[2]) - 1) * interval
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[3]) then return {0, wait} end
local next_free = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_free), 'PX', math.ceil((next_free - now) / 1000) + 1000)
return {1, wait}
"""

# KEYS: workers zset, this worker's hash. ARGV: worker. A worker that stops cleanly leaves at once.
LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""


class ListingLapsed(Exception):
    """This worker's listing expired (Redis was unreachable longer than the TTL): resync first."""


class RedisAddressCounts:
    """The deployment's per-address counts (see the module docstring). Every method may raise
    redis errors; the caller (delivery/address_limits.py) decides what a failure means."""

    def __init__(self, client: redis.Redis, prefix: str, worker_id: Callable[[], str], kind: str = "streams",
                 ttl: float = TTL_SECONDS):
        self._worker_id = worker_id          # read at call time: the object may be built before the fork
        self.ttl_ms = int(ttl * 1000)
        base = f"{prefix}:addr:{kind}"
        self.workers_key = f"{base}:workers"
        self.hash_prefix = f"{base}:w:"
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)
        self._refresh = client.register_script(REFRESH)
        self._leave = client.register_script(LEAVE)
        self._rate = client.register_script(RATE)
        self.rate_prefix = f"{prefix}:addr:{kind}:rate:"

    @property
    def worker(self) -> str:
        return self._worker_id()

    @property
    def own_key(self) -> str:
        return self.hash_prefix + self.worker

    def acquire(self, address: str, limit: int | None) -> tuple[bool, int]:
        """Take one for `address` unless the deployment holds `limit`: (taken, the deployment's count)."""
        taken, count = self._acquire(keys=[self.workers_key, self.own_key],
                                     args=[self.worker, address, -1 if limit is None else limit, self.hash_prefix])
        if taken == -1:
            raise ListingLapsed(self.worker)
        return taken == 1, int(count)

    def release(self, address: str) -> None:
        self._release(keys=[self.own_key], args=[address])

    def refresh(self) -> bool:
        """Extend this worker's listing; False if it had lapsed (call `resync`)."""
        return bool(self._refresh(keys=[self.workers_key, self.own_key], args=[self.worker, self.ttl_ms, 0]))

    def resync(self, held: Mapping[str, int]) -> None:
        """List this worker afresh with exactly the counts it holds."""
        args: list = [self.worker, self.ttl_ms, 1]
        for address, count in held.items():
            if count > 0:
                args += [address, count]
        self._refresh(keys=[self.workers_key, self.own_key], args=args)

    def take_new(self, address: str, rate: float, burst: int, max_wait: float) -> tuple[bool, float]:
        """Take the address's next slot of the admission gate's share: (taken, seconds to wait)."""
        taken, wait_us = self._rate(keys=[self.rate_prefix + address],
                                    args=[max(1, int(1e6 / rate)), burst, int(max_wait * 1e6)])
        return taken == 1, int(wait_us) / 1e6

    def leave(self) -> None:
        self._leave(keys=[self.workers_key, self.own_key], args=[self.worker])
