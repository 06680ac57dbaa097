"""Lease: which worker of the deployment holds the one exchange connection.

A Redis key holds `owner:epoch` with a TTL. Acquiring takes a new epoch (INCR),
so every leadership has a number larger than all before it. That number fences
the leader: the publish script in `redis_bus.py` publishes only while the key
still holds this `owner:epoch`, and hubs drop ticks of older epochs. A lease
alone makes one leader likely; fencing makes a second one harmless.

The holder also demotes itself, on the monotonic clock, when it has not renewed
within its renew deadline (shorter than the TTL): a leader paused by SIGSTOP or
a blocked hub gives up before anyone else can take over, not after.

Why not redis-py's Lock: it is greenlet-local under gevent and its retries make
a lost reply to `SET NX` look like failure while we hold the key (docs/library-facts.md).
Every command here runs once; a reply lost in transit is repaired by making
ACQUIRE re-entrant for the same owner.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import gevent
import gevent.event
import pybreaker
import redis

log = logging.getLogger(__name__)

# KEYS: lease, epoch counter.  ARGV: owner, ttl ms, floor.
# Returns the epoch held by `owner` (new or, if the reply to an earlier call was lost, the same), or nil.
# `floor` is the highest epoch the caller has seen: a Redis that restarted without its data
# would otherwise count epochs from 1 again, and every hub would drop the new leader's ticks.
ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  local owner, epoch = string.match(current, '^(.*):(%d+)$')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(epoch)
  end
  return nil
end
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
if counter < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[3])
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
return epoch
"""

# KEYS: lease.  ARGV: token (owner:epoch), ttl ms.  Returns 1 if still ours and extended.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease.  ARGV: token, events channel.  Deletes only our own lease, and tells the standbys.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released ' .. ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class LeaseTimings:
    ttl: float = 2.0             # seconds a lease lives without renewal
    renew_interval: float = 0.5  # how often the holder renews; standbys try to acquire
    renew_deadline: float = 1.5  # the holder demotes itself if no renewal succeeded for this long

    def validate(self) -> None:
        if not (0 < self.renew_interval < self.renew_deadline < self.ttl):
            raise ValueError("lease timings must satisfy 0 < renew_interval < renew_deadline < ttl")


class Lease:
    """One worker's view of the deployment-wide lease."""

    def __init__(self, client: redis.Redis, prefix: str, timings: LeaseTimings,
                 clock: Callable[[], float] = time.monotonic):
        timings.validate()
        self.client = client
        self.key = f"{prefix}:lease"
        self.epoch_key = f"{prefix}:epoch"
        self.events_channel = f"{prefix}:lease-events"
        self.timings = timings
        self._clock = clock
        self._owner: tuple[int, str] | None = None
        self.epoch: int | None = None
        self.since: float | None = None          # wall clock, for /health
        self._renewed_at = 0.0                    # monotonic
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self.acquisitions = 0
        self.losses = 0

    @property
    def owner(self) -> str:
        """Unique per process: a lease built before gunicorn forks (--preload) must not give
        every worker the same identity, which ACQUIRE's re-entrancy would then let share."""
        pid = os.getpid()
        if self._owner is None or self._owner[0] != pid:
            self._owner = (pid, f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}")
        return self._owner[1]

    @property
    def token(self) -> str | None:
        return f"{self.owner}:{self.epoch}" if self.epoch is not None else None

    def held(self) -> bool:
        """True while we hold it and the last renewal is within the renew deadline."""
        if self.epoch is None:
            return False
        if self._clock() - self._renewed_at > self.timings.renew_deadline:
            self.demote("renew deadline passed")
            return False
        return True

    def try_acquire(self, floor: int = 0) -> bool:
        """One attempt; True if we now hold the lease, with an epoch above `floor` and all before."""
        started = self._clock()
        epoch = self._acquire(keys=[self.key, self.epoch_key], args=[self.owner, self._ttl_ms(), floor])
        if epoch is None:
            return False
        if self.epoch != int(epoch):
            self.acquisitions += 1
            self.since = time.time()
            log.warning("lease: acquired as %s, epoch %s", self.owner, epoch)
        self.epoch = int(epoch)
        self._renewed_at = started
        return True

    def renew(self) -> bool:
        """Extend our lease; False (and demoted) if it is no longer ours."""
        token = self.token
        if token is None:
            return False
        started = self._clock()
        if not self._renew(keys=[self.key], args=[token, self._ttl_ms()]):
            self.demote("another owner holds the lease")
            return False
        # Measured from before the call: a slow reply must not stretch our deadline.
        self._renewed_at = started
        return True

    def release(self) -> bool:
        """Give the lease up now so a standby takes over at once instead of after the TTL."""
        token = self.token
        self.epoch = None
        if token is None:
            return False
        try:
            released = bool(self._release(keys=[self.key], args=[token, self.events_channel]))
            log.warning("lease: released %s", token)
            return released
        except redis.RedisError as exc:
            log.warning("lease: release failed (%s); it expires by itself", exc)
            return False

    def demote(self, reason: str) -> None:
        if self.epoch is not None:
            self.losses += 1
            log.warning("lease: epoch %s lost: %s", self.epoch, reason)
        self.epoch = None
        self.since = None

    def _ttl_ms(self) -> int:
        return int(self.timings.ttl * 1000)

    def current_holder(self) -> tuple[str, int] | None:
        """(owner, epoch) of whoever holds the lease now, read from Redis."""
        value = self.client.get(self.key)
        if not value:
            return None
        text = value if isinstance(value, str) else value.decode()     # str from a decode_responses client
        owner, _, epoch = text.rpartition(":")
        return owner, int(epoch)


class Election:
    """The loop every worker runs: standbys try to acquire, the holder renews.

    `on_elected` / `on_demoted` start and stop this worker's upstream feed.
    `wake()` makes a standby try at once (the holder announced a release).
    """

    def __init__(self, lease: Lease, on_elected: Callable[[], None], on_demoted: Callable[[], None],
                 epoch_floor: Callable[[], int] = lambda: 0, breaker: pybreaker.CircuitBreaker | None = None):
        self.lease = lease
        self.epoch_floor = epoch_floor
        self.breaker = breaker
        self.redis_failing = False            # the last command failed (or the breaker refused it)
        self.on_elected = on_elected
        self.on_demoted = on_demoted
        self.leading = False
        self.redis_ok_at: float | None = None     # monotonic time of the last successful command
        self.redis_latency_ms: float | None = None
        self.last_error = ""
        self._wake = gevent.event.Event()
        self._hold_off_until = 0.0                # monotonic; no acquiring before (after a yield)
        self.yields = 0

    def wake(self) -> None:
        self._wake.set()

    def run_forever(self) -> None:
        while True:
            try:
                self._once()
            except gevent.GreenletExit:
                raise
            except Exception:  # noqa: BLE001 - the election must outlive any one bad pass
                log.exception("election pass failed")
            self._wake.wait(self.lease.timings.renew_interval)
            self._wake.clear()

    def _once(self) -> None:
        lease = self.lease
        started = time.monotonic()
        if lease.epoch is None and started < self._hold_off_until:
            self._sync(False)
            return
        command = lease.renew if lease.epoch is not None else lambda: lease.try_acquire(self.epoch_floor())
        try:
            if self.breaker is not None:
                self.breaker.call(command)
            else:
                command()
            self.redis_ok_at = time.monotonic()
            self.redis_latency_ms = round((self.redis_ok_at - started) * 1000, 3)
            self.redis_failing = False
        except (redis.RedisError, pybreaker.CircuitBreakerError) as exc:
            self.redis_failing = True
            self.last_error = f"{type(exc).__name__}: {exc}"
        self._sync(lease.held())

    def _sync(self, holding: bool) -> None:
        """Start or stop the feed to match whether we hold the lease."""
        if holding and not self.leading:
            self.leading = True
            self.on_elected()
        elif not holding and self.leading:
            self.leading = False
            self.on_demoted()

    def yield_lease(self, hold_off: float) -> None:
        """Step down and let another worker (another host, another route) lead for `hold_off` s."""
        self.yields += 1
        self._hold_off_until = time.monotonic() + hold_off
        self.resign()

    def resign(self) -> None:
        """Graceful stop: stop the feed first (no tick after release), then release."""
        if self.leading:
            self.leading = False
            self.on_demoted()
        self.lease.release()
