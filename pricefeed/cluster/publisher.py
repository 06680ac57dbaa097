"""TickPublisher: the leader's ticks go to Redis from their own greenlet, in batches.

The feed's read loop must never wait for Redis: it also answers the exchange's pings, and
a leader that publishes one tick per round trip from that loop falls behind as soon as the
round trip is long (100 ms to Redis allows 10 ticks/s), until its pongs are late and the
exchange drops it (found by the delay fault of tests/faults/test_multihost.py). Here the
loop only queues; one greenlet publishes everything queued in one pipelined round trip,
in order. The queue is bounded: past `limit` the oldest ticks are dropped (counted), as a
slow browser's mailbox drops all but the latest price.
"""
from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

import gevent
import gevent.event
import pybreaker

from pricefeed.ticks import PriceTick

log = logging.getLogger(__name__)

BATCH = 256


class TickPublisher:
    def __init__(self, publish_many: Callable[[list[PriceTick]], list], on_failed: Callable[[PriceTick], object],
                 limit: int = 10_000):
        self._publish_many = publish_many
        self._on_failed = on_failed
        self._pending: collections.deque[PriceTick] = collections.deque(maxlen=limit)
        self._ready = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self.dropped = 0
        self.batches = 0
        self._warned_at = 0.0

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run_forever)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        self._pending.clear()

    def submit(self, tick: PriceTick) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(tick)
        self._ready.set()

    def _run_forever(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
                self._send(batch)
                # Let others waiting on the bus's breaker (the leader's heartbeat) have their turn:
                # a lock released and taken again without a switch starves them.
                gevent.sleep(0)

    def _send(self, batch: list[PriceTick]) -> None:
        try:
            self._publish_many(batch)
            self.batches += 1
        except (Exception, pybreaker.CircuitBreakerError) as exc:  # noqa: BLE001 - Redis trouble
            # The lease deadline demotes us and the fallback chain goes local; until then
            # our own clients still get the prices.
            now = time.monotonic()
            if now - self._warned_at > 1:
                self._warned_at = now
                log.warning("publish failed (%s: %s); delivering locally", type(exc).__name__, exc)
            for tick in batch:
                self._on_failed(tick)
