"""Load shedding: refuse new streams while this worker's flusher runs late.

A count limit (MAX_CLIENTS) cannot know what a worker can carry: that depends on
the tick rate, the pairs each client reads, the machine and what else runs on
it. Lag can: the flusher reports, once per flush, how long the oldest thing it
wrote had waited — a tick since it reached the hub (every-tick pace), or a slot
since it fell due (conflated pace). While that lag is over the bound, a new
stream would only make every connected client later still, so it gets a fast
`503 at_capacity` with a jittered Retry-After instead.

Hysteresis, so the answer does not flap with one slow flush or one quick one:
shedding starts after `over_flushes` consecutive flushes over the bound that
span at least `over_s` seconds (a burst of connects can stall a worker for a few
hundred milliseconds; that is the admission gate's to pace, not an overload), or
at once if the flush under way is already `over_s` and four bounds late; it stops
only when the smoothed lag is below half the bound — or when the flusher has had
nothing to write for a whole bound (a quiet market is not an overload).

Refused browsers come back after their Retry-After, and while the overload lasts
each return is another refusal: thousands of them every few seconds take CPU the
open streams need. So the spread of the Retry-After adapts, once a second, so that
the refused come back at about REFUSALS_PER_SECOND per worker: the shedder counts
the refused browsers still away (each until the second it was told to come back),
and the mean wait of the next ones is that count over the rate (a spread of at most
MAX_SPREAD_S, at least the configured jitter). Counting who is away, rather than
scaling by this second's refusals, does not pile corrections on top of each other:
a fixed crowd settles at its rate; a short overload, with few away, keeps short waits.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable

SMOOTHING = 0.3          # weight of the newest flush in the smoothed lag (EWMA)
# Per worker, the rate at which refused browsers should come back while shedding lasts: a
# refusal costs ~0.1 ms at the door (server/accept.py), so this is ~1 % of a core.
REFUSALS_PER_SECOND = 100.0
MAX_SPREAD_S = 60        # the most the Retry-After's random spread grows to


class LoadShedder:
    def __init__(self, bound_s: float, over_flushes: int = 3, retry_after_s: int = 2,
                 retry_jitter_s: int = 3, clock: Callable[[], float] = time.monotonic,
                 oldest_unwritten: Callable[[], float | None] = lambda: None, over_s: float = 1.0):
        if bound_s <= 0 or over_flushes < 1 or retry_after_s < 1 or retry_jitter_s < 0 or over_s < 0:
            raise ValueError("bound_s must be > 0, over_flushes >= 1, retry_after_s >= 1, retry_jitter_s >= 0, "
                             "over_s >= 0")
        self.bound_s = bound_s
        self.over_flushes = over_flushes
        self.over_s = over_s
        self.retry_after_s = retry_after_s
        self.retry_jitter_s = retry_jitter_s
        self._clock = clock
        # When the oldest thing still waiting for a write became due (None: nothing waits);
        # the flusher provides it, so a flush stuck for seconds is seen before it ends.
        self._oldest_unwritten = oldest_unwritten
        self.lag_s = 0.0                 # the latest flush's lag
        self.smoothed_lag_s = 0.0
        self.max_lag_s = 0.0
        self.shedding = False
        self.shedding_since: float | None = None   # wall clock, for /health
        self.shed_total = 0              # new streams refused for lag
        self.shed_at_door = 0            # of those, answered before parsing (server/accept.py)
        self.episodes = 0                # times shedding started
        self._over = 0                   # consecutive flushes over the bound
        self._over_since = 0.0           # when the first of them ended
        self._last_flush_at: float | None = None
        self.retry_spread_s = float(retry_jitter_s)   # the Retry-After's random extra: 0..this
        self._due_back: dict[int, int] = {}           # refused browsers still away, by the second they return
        self._spread_updated_at: float | None = None

    def observe(self, lag_s: float, now: float) -> None:
        """The flusher finished a flush whose oldest frame had waited `lag_s` seconds (one call per flush)."""
        self.lag_s = lag_s
        self.max_lag_s = max(self.max_lag_s, lag_s)
        self.smoothed_lag_s += SMOOTHING * (lag_s - self.smoothed_lag_s)
        self._last_flush_at = now
        if lag_s > self.bound_s:
            if self._over == 0:
                self._over_since = now
            self._over += 1
        else:
            self._over = 0
        if not self.shedding and self._over >= self.over_flushes and now - self._over_since >= self.over_s:
            self._start()
        elif self.shedding and self.smoothed_lag_s < self.bound_s / 2 and lag_s < self.bound_s / 2:
            self._stop()

    def pending_lag(self, now: float | None = None) -> float:
        """How long the oldest unwritten frame has waited so far (0 if nothing waits)."""
        since = self._oldest_unwritten()
        if since is None:
            return 0.0
        return max(0.0, (self._clock() if now is None else now) - since)

    def refuse(self) -> int | None:
        """For a new stream: None to admit it, or the Retry-After (seconds, jittered) to refuse it with."""
        now = self._clock()
        pending = self.pending_lag(now)
        if not self.shedding and pending > max(4 * self.bound_s, self.over_s):
            self._start()      # a flush (or a starved flusher) already this late needs no second opinion
        elif self.shedding and pending <= self.bound_s and self._idle(now):
            self._stop()
        if not self.shedding:
            return None
        self.shed_total += 1
        if self._spread_updated_at is None or now - self._spread_updated_at >= 1.0:
            self._update_spread(now)
        retry_after = self.retry_after_s + random.randint(0, int(self.retry_spread_s))
        due = int(now + retry_after)
        self._due_back[due] = self._due_back.get(due, 0) + 1
        return retry_after

    def _update_spread(self, now: float) -> None:
        second = int(now)
        for due in [due for due in self._due_back if due < second]:
            del self._due_back[due]
        away = sum(self._due_back.values())
        # For `away` browsers to return at REFUSALS_PER_SECOND, the mean wait is away / rate.
        mean = away / REFUSALS_PER_SECOND
        self.retry_spread_s = min(MAX_SPREAD_S, max(float(self.retry_jitter_s), 2 * (mean - self.retry_after_s)))
        self._spread_updated_at = now

    def settle(self) -> None:
        """What a quiet market means for the readings: with nothing flushed for a whole bound and
        nothing waiting, the worker is not late, and not shedding (without this, /metrics and
        /health would show the last overload until the next flush or the next new stream)."""
        now = self._clock()
        if self._idle(now) and self.pending_lag(now) <= self.bound_s:
            if self.shedding:
                self._stop()
            self.lag_s = self.smoothed_lag_s = 0.0

    def detail(self) -> str:
        return (f"this worker is delivering {self.smoothed_lag_s * 1000:.0f} ms late "
                f"(bound {self.bound_s * 1000:.0f} ms); retry")

    def _idle(self, now: float) -> bool:
        # No flush for a whole bound and nothing waiting: nothing is late any more.
        return self._last_flush_at is None or now - self._last_flush_at > self.bound_s

    def _start(self) -> None:
        self.shedding = True
        self.shedding_since = time.time()
        self.episodes += 1

    def _stop(self) -> None:
        self.shedding = False
        self.shedding_since = None
        self._over = 0
        self.smoothed_lag_s = min(self.smoothed_lag_s, self.lag_s)
        # The spread is kept: browsers refused in this episode are still away, and a new one
        # starting before they are back must not send the next ones back all at once.

    def status(self) -> dict:
        self.settle()
        return {"lag_ms": round(self.lag_s * 1000, 1), "lag_smoothed_ms": round(self.smoothed_lag_s * 1000, 1),
                "lag_max_ms": round(self.max_lag_s * 1000, 1), "lag_pending_ms": round(self.pending_lag() * 1000, 1),
                "lag_bound_ms": round(self.bound_s * 1000, 1), "shedding": self.shedding,
                "shedding_since": self.shedding_since, "shed_total": self.shed_total,
                "shed_at_door": self.shed_at_door, "retry_spread_s": round(self.retry_spread_s, 1),
                "shed_episodes": self.episodes}


def lag_bound(configured_s: float, interval_s: float) -> float:
    """The bound: as configured, or (0) derived from the pace — 250 ms for every-tick clients
    (interval 0), whose whole point is being prompt; for a conflated pace, half its interval
    (half its slots' round; at least 250 ms): a client on a 1 s pace may get an update 0.5 s
    late before new streams are turned away — less would shed on every burst of connects."""
    if configured_s > 0:
        return configured_s
    return max(0.25, interval_s / 2)
