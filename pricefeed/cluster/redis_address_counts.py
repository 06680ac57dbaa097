"""RedisAddressCounts: per-address counts (streams) for the whole deployment, in Redis.

Each worker keeps what it holds in a hash of its own, `{prefix}:addr:{kind}:w:{worker}`
(address → count), and is listed in a sorted set `{prefix}:addr:{kind}:workers` with the time
its listing expires (Redis's own clock) as the score. Its heartbeat (`refresh`, every
REFRESH_SECONDS) pushes that time on; a worker killed with SIGKILL stops pushing, and its
counts stop counting TTL_SECONDS later at most — no one has to clean up after it, and
nothing leaks (the hash itself expires a moment after its listing).

Opening a stream is one operation of a script (BATCH): drop the expired listings, add up the
address's count over every live worker's hash, and take one for this worker if the sum is below
the cap — atomically, so neither streams opened one after another nor a burst of them at once,
on any number of workers and hosts, ever pass the cap: the overshoot bound is zero. Its cost
is O(live workers) hash reads inside Redis (microseconds for tens of workers), and one round
trip shared by every open and close the worker queued meanwhile (a burst of 1,000 opens is a
handful of calls, not 1,000 in a row). Closing is one HINCRBY. Neither is retried (docs/library-facts.md):
a release that fails leaves this worker's hash high, which can only refuse too early, and the
next refresh rewrites the hash from the worker's own counts (`resync`), as it does after any
failure. Nothing here runs per tick.

The scripts read hashes they are not passed as KEYS: fine on one Redis or under Sentinel,
not on Redis Cluster (which pricefeed does not support).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import redis

TTL_SECONDS = 5.0
REFRESH_SECONDS = 1.0
# The hash outlives its listing by this much: while listed, a worker's counts are always there.
HASH_GRACE_MS = 2000

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# One round trip for every count operation a worker has queued (cluster/address_limits.py batches
# the opens and closes that arrive while one call is in flight). KEYS: workers zset, this worker's
# hash. ARGV: worker, cap (-1: none), hash key prefix, rate key prefix, then 5 per operation:
#   'a', address, -, -, -                      take one for the address unless the deployment holds the cap
#   'r', address, -, -, -                      give one back
#   'n', address, interval µs, burst, max µs   the address's next slot of the admission share (GCRA)
# Results, one {code, value} per operation in order: 'a' {1, count after} taken, {0, count} at the
# cap; 'r' {1, 0}; 'a' and 'r' {-1, 0} when this worker's listing has lapsed (nothing done: its
# hash may be gone, it must resync first); 'n' {1, wait µs} taken or {0, wait µs} refused (the wait
# would pass the maximum). The share is one GCRA per address whose state is when its queue would be
# empty (µs on Redis's clock), expiring once that has passed.
BATCH = """local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local now_us = t[1] * 1000000 + t[2]
local listed = redis.call('ZSCORE', KEYS[1], ARGV[1])
local live = listed and tonumber(listed) > now
local workers = {}
if live then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  workers = redis.call('ZRANGE', KEYS[1], 0, -1)
end
local cap = tonumber(ARGV[2])
local out = {}
for i = 5, #ARGV, 5 do
  local kind, address = ARGV[i], ARGV[i + 1]
  if kind == 'n' then
    local key = ARGV[4] .. address
    local interval = tonumber(ARGV[i + 2])
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now_us then tat = now_us end
    local wait = tat - now_us - (tonumber(ARGV[i + 3]) - 1) * interval
    if wait < 0 then wait = 0 end
    if wait > tonumber(ARGV[i + 4]) then
      out[#out + 1] = {0, wait}
    else
      local next_free = tat + interval
      redis.call('SET', key, string.format('%.0f', next_free), 'PX', math.ceil((next_free - now_us) / 1000) + 1000)
      out[#out + 1] = {1, wait}
    end
  elseif not live then
    out[#out + 1] = {-1, 0}
  elseif kind == 'a' then
    local total = 0
    for _, worker in ipairs(workers) do
      total = total + (tonumber(redis.call('HGET', ARGV[3] .. worker, address)) or 0)
    end
    if cap >= 0 and total >= cap then
      out[#out + 1] = {0, total}
    else
      redis.call('HINCRBY', KEYS[2], address, 1)
      out[#out + 1] = {1, total + 1}
    end
  else
    if redis.call('HINCRBY', KEYS[2], address, -1) <= 0 then redis.call('HDEL', KEYS[2], address) end
    out[#out + 1] = {1, 0}
  end
end
return out
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

# KEYS: workers zset, this worker's hash. ARGV: worker. A worker that stops cleanly leaves at once.
LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""


class ListingLapsed(Exception):
    """This worker's listing expired (Redis was unreachable longer than the TTL): resync first."""


ACQUIRE, RELEASE, NEW_STREAM = "a", "r", "n"
LAPSED = -1


@dataclass(frozen=True)
class CountOp:
    """One operation of a batch: ACQUIRE or RELEASE one for `address`, or take its NEW_STREAM slot
    (`rate` per second after `burst`, refused past `max_wait` seconds)."""
    kind: str
    address: str
    rate: float = 0.0
    burst: int = 0
    max_wait: float = 0.0

    def args(self) -> list:
        if self.kind != NEW_STREAM:
            return [self.kind, self.address, 0, 0, 0]
        return [self.kind, self.address, max(1, int(1e6 / self.rate)), self.burst, int(self.max_wait * 1e6)]


class RedisAddressCounts:
    """The deployment's per-address counts (see the module docstring). Every method may raise
    redis errors; the caller (cluster/address_limits.py) decides what a failure means."""

    def __init__(self, client: redis.Redis, prefix: str, worker_id: Callable[[], str], kind: str = "streams",
                 ttl: float = TTL_SECONDS):
        self._worker_id = worker_id          # read at call time: the object may be built before the fork
        self.ttl_ms = int(ttl * 1000)
        base = f"{prefix}:addr:{kind}"
        self.workers_key = f"{base}:workers"
        self.hash_prefix = f"{base}:w:"
        self.rate_prefix = f"{base}:rate:"
        self._batch = client.register_script(BATCH)
        self._refresh = client.register_script(REFRESH)
        self._leave = client.register_script(LEAVE)

    @property
    def worker(self) -> str:
        return self._worker_id()

    @property
    def own_key(self) -> str:
        return self.hash_prefix + self.worker

    def run(self, ops: Sequence[CountOp], limit: int | None) -> list[tuple[int, int]]:
        """Every operation in one script call, in order: one (code, value) each (see BATCH)."""
        args: list = [self.worker, -1 if limit is None else limit, self.hash_prefix, self.rate_prefix]
        for op in ops:
            args += op.args()
        return [(int(code), int(value)) for code, value in self._batch(keys=[self.workers_key, self.own_key],
                                                                       args=args)]

    def acquire(self, address: str, limit: int | None) -> tuple[bool, int]:
        """Take one for `address` unless the deployment holds `limit`: (taken, the deployment's count)."""
        [(code, count)] = self.run([CountOp(ACQUIRE, address)], limit)
        if code == LAPSED:
            raise ListingLapsed(self.worker)
        return code == 1, count

    def release(self, address: str) -> None:
        [(code, _)] = self.run([CountOp(RELEASE, address)], None)
        if code == LAPSED:
            raise ListingLapsed(self.worker)

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
        [(code, wait_us)] = self.run([CountOp(NEW_STREAM, address, rate, burst, max_wait)], None)
        return code == 1, wait_us / 1e6

    def leave(self) -> None:
        self._leave(keys=[self.workers_key, self.own_key], args=[self.worker])
