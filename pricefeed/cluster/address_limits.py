"""AddressLimits: at most `limit` of something (streams) per client address, for the deployment.

Three tiers of counts, the widest that works deciding:
- `deployment`: with Redis, every worker of every host counts in Redis (redis_address_counts.py);
  one atomic script call per batch of the opens and closes queued meanwhile, so the cap holds
  exactly, bursts included, and a burst costs a few round trips, not one per open.
- `host`: the workers of this host share a table in memory-mapped files (host_address_counts.py).
  Kept up to date always, so that when Redis is unreachable the host's count takes over at once
  (and /health says `host`); with Redis it also spares Redis an address the host alone has capped.
- `worker`: this worker's own counts, used before the worker has started (a test client, the
  first request) and if the host table cannot be used.

This worker's own holdings (`held`) are the truth the other tiers are rebuilt from: a worker whose
Redis listing lapsed, or whose release could not reach Redis, rewrites its hash from them at the
next refresh (every REFRESH_SECONDS, on its own greenlet, never on a request's time).

The address's share of the admission gate (its new streams per second) follows the same tiers:
`take_new` paces the address for the deployment in Redis, else for the host (HostAddressRates),
else returns None and the worker's own gate paces it (delivery/admission.py). A newcomer that
leaves while it waits gives its slot back to its worker's gate only: the shared pace keeps it,
so that address waits one slot longer at most.

The interface is what the admission point needs, and what an accept path counting pending
connections per address can reuse with another `kind`: acquire(address) → bool, release(address),
start(), stop(), status(). Addresses are plain strings: the web layer decides what a client's
address is (trusted proxies, IPv6 /64s).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.lock
import redis
from gevent.event import AsyncResult

from pricefeed.cluster.host_address_counts import HostAddressCounts, HostAddressRates
from pricefeed.cluster.redis_address_counts import (
    ACQUIRE,
    LAPSED,
    NEW_STREAM,
    REFRESH_SECONDS,
    RELEASE,
    CountOp,
    ListingLapsed,
    RedisAddressCounts,
)

log = logging.getLogger(__name__)

DEPLOYMENT, HOST, WORKER = "deployment", "host", "worker"
# After a Redis failure, acquires use the host's count for this long before trying Redis again
# (the refresh greenlet tries every REFRESH_SECONDS meanwhile): a frozen Redis costs one request
# one timeout, not every request one.
REDIS_RETRY_SECONDS = 2.0
# Operations per script call: a call stays well under a millisecond inside Redis (each acquire
# reads one hash field per live worker), and a burst queues for a few calls at most.
MAX_BATCH = 256


class _Queued:
    """An operation waiting for the worker's next script call, and its answer: True/False for an
    acquire, (taken, wait) or None (Redis failed: ask the host) for a new-stream slot."""
    __slots__ = ("op", "answer", "abandoned")

    def __init__(self, op: CountOp):
        self.op = op
        self.answer: AsyncResult = AsyncResult()
        self.abandoned = False       # its greenlet was killed while it waited


class AddressLimits:
    def __init__(self, limit: int | None, host: HostAddressCounts | None = None,
                 redis_counts: RedisAddressCounts | None = None, clock: Callable[[], float] = time.monotonic,
                 host_rates: HostAddressRates | None = None):
        self.limit = limit
        self.host = host
        self.host_rates = host_rates
        self.redis = redis_counts
        self._clock = clock
        self._held: dict[str, int] = {}
        self._started = False
        self._redis_ok = False           # the last Redis call worked and the hash is current
        self._redis_retry_at = 0.0
        self._needs_resync = True        # Redis does not know this worker's holdings exactly
        # One Redis call of this worker's at a time, so that a resync's snapshot of `_held` never
        # interleaves with a count in flight. Opens and closes do not each wait their turn: they
        # queue, and one sender greenlet sends everything queued in one script call (the round
        # trip of one open carries every open that arrived meanwhile). A turn per open made a
        # burst of thousands of opens a queue of thousands of round trips.
        self._redis_turn = gevent.lock.BoundedSemaphore(1)
        self._queue: list[_Queued] = []
        self._sender: gevent.Greenlet | None = None
        self.batches = 0
        self._refresher: gevent.Greenlet | None = None
        self.refused = 0
        self.refused_by_host = 0
        self.redis_errors = 0
        self.resyncs = 0
        self.last_redis_error = ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """After the fork: claim this worker's column of the host table, list it in Redis."""
        if self._started:
            return
        self._started = True
        if self.host is not None and self.host.start():
            for address, count in self._held.items():     # streams opened before the start
                self.host.add(address, count)
        if self.host_rates is not None:
            self.host_rates.start()
        if self.host is not None or self.redis is not None:
            self._refresher = gevent.spawn(self._refresh_forever)

    def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.kill(block=False)
            self._refresher = None
        if self.redis is not None and self._redis_ok:
            try:
                with self._redis_turn:       # after a script call in flight, never before it
                    self.redis.leave()       # this worker's counts stop counting now, not after the TTL
            except (redis.RedisError, OSError):
                pass
        if self.host is not None:
            self.host.stop()
        if self.host_rates is not None:
            self.host_rates.stop()
        self._started = False

    @property
    def scope(self) -> str:
        """Which count the cap is checked against right now (shown in /health)."""
        if self._started and self.redis is not None and self._redis_ok:
            return DEPLOYMENT
        if self._started and self.host is not None and self.host.shared:
            return HOST
        return WORKER

    # -- counting ---------------------------------------------------------------------------

    def acquire(self, address: str) -> bool:
        """Count one more for `address`; False (nothing counted) if it holds its limit already."""
        if self.limit is not None and self._held.get(address, 0) >= self.limit:
            self.refused += 1
            return False
        host = self.host if self._started and self.host is not None and self.host.shared else None
        if host is not None:
            counted, _ = host.acquire(address, self.limit)
            if not counted:
                # The host alone holds the cap: the deployment does too, and Redis is spared.
                self.refused += 1
                self.refused_by_host += 1
                return False
        if not (self._started and self.redis is not None):
            self._held[address] = self._held.get(address, 0) + 1
            return True
        try:
            allowed = self._deployment_allows(address)
        except BaseException:
            if host is not None:     # killed while waiting for Redis (a stopping worker): count nothing
                host.add(address, -1)
            raise
        if not allowed:
            if host is not None:
                host.add(address, -1)
            self.refused += 1
        return allowed

    def release(self, address: str) -> None:
        if self._held.get(address, 0) <= 0:
            return
        if self._started and self.host is not None and self.host.shared:
            self.host.add(address, -1)
        self._forget(address)
        if not self._started or self.redis is None:
            return
        if self._needs_resync or not self._redis_usable():
            self._needs_resync = True        # Redis learns it from the next resync
            return
        self._submit(CountOp(RELEASE, address))

    def _forget(self, address: str) -> None:
        held = self._held.get(address, 0)
        if held <= 1:
            self._held.pop(address, None)
        else:
            self._held[address] = held - 1

    def take_new(self, address: str, rate: float, burst: int, max_wait: float) -> tuple[bool, float] | None:
        """The address's next slot of its admission share (`rate` per second after `burst`), for the
        widest tier that works: (taken, seconds to wait; not taken past `max_wait`). None: no shared
        tier (before the start, or no host table): the caller paces the address itself."""
        if not self._started:
            return None
        if self.redis is not None and self._redis_usable():
            queued = self._submit(CountOp(NEW_STREAM, address, rate, burst, max_wait))
            try:
                shared = queued.answer.get()
            except BaseException:
                queued.abandoned = True      # the shared pace keeps its slot, if it was taken
                raise
            if shared is not None:
                return shared
        if self.host_rates is not None and self.host_rates.shared:
            return self.host_rates.take(address, rate, burst, max_wait)
        return None

    def held(self, address: str) -> int:
        """What this worker holds for `address`."""
        return self._held.get(address, 0)

    def _deployment_allows(self, address: str) -> bool:
        """The deployment's answer, counted in `_held` when yes; while Redis is unreachable, the
        host's (already given: yes)."""
        if not self._redis_usable():
            self._needs_resync = True        # Redis will not know of this one: tell it later
            self._held[address] = self._held.get(address, 0) + 1
            return True
        queued = self._submit(CountOp(ACQUIRE, address))
        try:
            return bool(queued.answer.get())      # an acquire's answer is True or False
        except BaseException:
            if queued.answer.ready() and queued.answer.value:
                self._forget(address)        # counted for us just now: Redis learns otherwise at the resync
                self._needs_resync = True
            else:
                queued.abandoned = True      # the sender counts nothing for us
            raise

    # -- the batched script calls -----------------------------------------------------------

    def _submit(self, op: CountOp) -> _Queued:
        queued = _Queued(op)
        self._queue.append(queued)
        if self._sender is None:
            self._sender = gevent.spawn(self._send_queued)
        return queued

    def _send_queued(self) -> None:
        """The sender: while anything is queued, send up to MAX_BATCH of it in one call."""
        try:
            while self._queue:
                with self._redis_turn:
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                    try:
                        self._send(batch)
                    finally:
                        for queued in batch:     # however the call ended, nobody waits for ever
                            if not queued.answer.ready():
                                queued.answer.set(False if queued.op.kind == ACQUIRE else None)
        finally:
            self._sender = None
            if self._queue:                      # this sender was killed with work queued
                self._sender = gevent.spawn(self._send_queued)

    def _send(self, batch: list[_Queued]) -> None:
        assert self.redis is not None
        wanted = [q for q in batch if q.op.kind == RELEASE or not q.abandoned]
        if not self._started or not self._redis_usable():     # stopped (left Redis), or failed, while these queued
            self._answer_without_redis(wanted)
            return
        try:
            if self._needs_resync:
                self._resync()
                wanted = [q for q in wanted if q.op.kind != RELEASE]     # the resync carried them
            results = self.redis.run([q.op for q in wanted], self.limit)
            if any(code == LAPSED for code, _ in results):
                # Every count of this call was refused (the listing lapsed); the new-stream
                # slots were taken. List afresh (that carries the releases), count again.
                self._resync()
                for queued, result in zip(wanted, results, strict=True):
                    if queued.op.kind == NEW_STREAM:
                        self._answer(queued, *result)
                wanted = [q for q in wanted if q.op.kind == ACQUIRE]
                results = self.redis.run([q.op for q in wanted], self.limit)
                if any(code == LAPSED for code, _ in results):
                    raise ListingLapsed(self.redis.worker)
        except (redis.RedisError, OSError, ListingLapsed) as exc:
            self._redis_failed(exc)
            self._answer_without_redis([q for q in wanted if not q.answer.ready()])
            return
        self.batches += 1
        self._redis_ok = True
        for queued, result in zip(wanted, results, strict=True):
            self._answer(queued, *result)

    def _answer(self, queued: _Queued, code: int, value: int) -> None:
        kind, address = queued.op.kind, queued.op.address
        if kind == NEW_STREAM:
            queued.answer.set((code == 1, value / 1e6))
        elif kind == ACQUIRE:
            taken = code == 1
            if taken and queued.abandoned:
                self._needs_resync = True        # Redis counted one nobody holds
            elif taken:
                # Counted before anything else runs: a resync's snapshot sees it.
                self._held[address] = self._held.get(address, 0) + 1
            queued.answer.set(taken)

    def _answer_without_redis(self, batch: list[_Queued]) -> None:
        """Redis could not be asked: an acquire has the host's answer (given: yes), a new-stream
        slot is asked of the host, a release reaches Redis with the next resync."""
        self._needs_resync = True
        for queued in batch:
            if queued.op.kind == ACQUIRE:
                if not queued.abandoned:
                    self._held[queued.op.address] = self._held.get(queued.op.address, 0) + 1
                queued.answer.set(True)
            elif queued.op.kind == NEW_STREAM:
                queued.answer.set(None)

    def _redis_usable(self) -> bool:
        return self._redis_ok or self._clock() >= self._redis_retry_at

    def _redis_failed(self, exc: BaseException) -> None:
        if self._redis_ok:
            log.warning("address limits: Redis unreachable (%s); counting per host until it answers", exc)
        self._redis_ok = False
        self._needs_resync = True
        self._redis_retry_at = self._clock() + REDIS_RETRY_SECONDS
        self.redis_errors += 1
        self.last_redis_error = f"{type(exc).__name__}: {exc}"[:200]

    def _resync(self) -> None:
        """Rewrite this worker's hash from `_held` (under the turn). Releases still queued are in
        `_held` already: the resync carries them, so they must not be sent after it."""
        assert self.redis is not None
        self._queue = [q for q in self._queue if q.op.kind != RELEASE]
        self.redis.resync(dict(self._held))
        self._needs_resync = False
        self.resyncs += 1

    # -- the heartbeat ----------------------------------------------------------------------

    def refresh_once(self) -> None:
        """Zero dead siblings' host columns; keep this worker listed in Redis (or list it again)."""
        if self.host is not None:
            self.host.sweep()
        if self.redis is None:
            return
        try:
            with self._redis_turn:
                if self._needs_resync or not self.redis.refresh():
                    self._resync()
        except (redis.RedisError, OSError) as exc:
            self._redis_failed(exc)
            return
        if not self._redis_ok:
            log.warning("address limits: Redis answers again; counting for the whole deployment")
        self._redis_ok = True

    def _refresh_forever(self) -> None:
        while True:
            try:
                self.refresh_once()
            except Exception:  # noqa: BLE001 - the heartbeat must outlive any one bad pass
                log.exception("address limits: refresh failed")
            gevent.sleep(REFRESH_SECONDS)

    def status(self) -> dict:
        busiest = max(self._held.values(), default=0)
        body: dict[str, Any] = {
            "max_streams_per_address": self.limit, "address_limits": self.scope,
            "addresses": len(self._held), "busiest_address_streams": busiest,
            "refused_too_many_streams": self.refused, "refused_by_host_count": self.refused_by_host}
        if self.host is not None:
            body["host_table"] = self.host.status()
        if self.redis is not None:
            body["redis_counts"] = {"errors": self.redis_errors, "resyncs": self.resyncs, "calls": self.batches,
                                    "last_error": self.last_redis_error or None}
        return body
