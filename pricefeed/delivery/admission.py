"""Admission: a bounded rate of new streams per worker.

Opening a stream costs a worker far more than keeping one (request parsing, a
snapshot encoded for this client alone). After a restart or a network blip,
thousands of browsers reconnect at once; admitted as fast as they arrive they
would take the CPU from the streams already open, and every price on this
worker would be late. The gate spaces new streams at `rate` per second after a
burst of `burst` (a leaky bucket, kept as one number: when the next slot is
free). A newcomer waits for its slot — its connection is open, it costs only an
idle greenlet — unless the queue is longer than `max_wait`, when it is told to
come back later instead (503 with Retry-After).
"""
from __future__ import annotations

import time
from typing import Callable


class AdmissionGate:
    def __init__(self, rate: float, burst: int, max_wait: float, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1 or max_wait < 0:
            raise ValueError("rate must be > 0, burst >= 1, max_wait >= 0")
        self.rate = rate
        self.burst = burst
        self.max_wait = max_wait
        self._clock = clock
        self._next_free = clock()     # when the queue empties, in the clock's time
        self.admitted = 0
        self.delayed = 0
        self.refused = 0

    def reserve(self) -> float | None:
        """Take the next slot: the seconds to wait before admitting, or None (refuse: queue full)."""
        now = self._clock()
        interval = 1.0 / self.rate
        # GCRA: `_next_free` is when the queue would be empty; `burst` slots may be taken at once.
        next_free = max(self._next_free, now)
        wait = next_free - now - (self.burst - 1) * interval
        wait = wait if wait > 1e-9 else 0.0     # float dust is not a wait
        if wait > self.max_wait:
            self.refused += 1
            return None
        self._next_free = next_free + interval
        self.admitted += 1
        if wait > 0:
            self.delayed += 1
        return wait

    def retry_after(self) -> int:
        """Whole seconds after which a refused client would find room."""
        interval = 1.0 / self.rate
        backlog = self._next_free - self._clock() - (self.burst - 1) * interval - self.max_wait
        return max(1, int(backlog) + 1)

    def status(self) -> dict:
        return {"rate_per_s": self.rate, "burst": self.burst, "admitted": self.admitted,
                "delayed": self.delayed, "refused": self.refused}
