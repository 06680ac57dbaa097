"""When to try the exchange again: capped exponential backoff with full jitter, and an attempt cap.

Binance bans an IP past 300 connection attempts per 5 minutes; a client that
reconnects in a tight loop (or a whole fleet reconnecting in step) gets there
fast. Full jitter spreads a fleet out; the sliding-window cap makes the ban
impossible whatever the backoff says. With a `HostAttemptBudget` the cap holds
for the whole host (every worker), which is what Binance counts.
"""
from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pricefeed.exchange.attempt_budget import HostAttemptBudget

ATTEMPT_WINDOW_SECONDS = 300.0


class AttemptBudgetSpent(Exception):
    """The host's attempts for the window are spent (by other workers): no attempt now."""

    def __init__(self, wait: float):
        super().__init__(f"the host's connection attempts for 5 minutes are spent; next in {wait:.1f}s")
        self.wait = wait


class ReconnectPolicy:
    """Decides how long to wait before the next connection attempt. Never gives up."""

    def __init__(self, base: float, cap: float, max_attempts_per_window: int,
                 window: float = ATTEMPT_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[float, float], float] = random.uniform,
                 host_budget: HostAttemptBudget | None = None):
        self.base = base
        self.cap = cap
        self.max_attempts = max_attempts_per_window
        self.window = window
        self._clock = clock
        self._rand = rand
        self.host_budget = host_budget
        self._failures = 0
        self._attempts: deque[float] = deque()
        self._not_before = 0.0

    def sibling(self) -> ReconnectPolicy:
        """The policy of another connection of the same set: its own backoff, but the same
        window of attempts and host budget (the exchange counts attempts per IP)."""
        other = ReconnectPolicy(self.base, self.cap, self.max_attempts, self.window, self._clock,
                                self._rand, self.host_budget)
        other._attempts = self._attempts
        return other

    @property
    def failures(self) -> int:
        return self._failures

    def delay(self) -> float:
        """Seconds to wait before the next attempt (0 when one may go now)."""
        now = self._clock()
        while self._attempts and now - self._attempts[0] >= self.window:
            self._attempts.popleft()
        wait = 0.0
        if self._failures:
            ceiling = min(self.cap, self.base * (2 ** min(self._failures - 1, 30)))
            wait = self._rand(0.0, ceiling)
        if len(self._attempts) >= self.max_attempts:
            wait = max(wait, self._attempts[0] + self.window - now)
        if self.host_budget is not None:
            wait = max(wait, self.host_budget.wait())
        return max(wait, self._not_before - now, 0.0)

    def take_host_attempt(self) -> None:
        """Take one of the host's attempts (shared by its workers); AttemptBudgetSpent if none is left."""
        if self.host_budget is not None:
            wait = self.host_budget.take()
            if wait > 0:
                raise AttemptBudgetSpent(wait)

    def attempted(self) -> None:
        """Record that an attempt is being made now."""
        self._attempts.append(self._clock())

    def failed(self, retry_after: float | None = None) -> None:
        """The attempt (or the connection it made) failed; `retry_after` is the server's own demand."""
        self._failures += 1
        if retry_after:
            self._not_before = max(self._not_before, self._clock() + retry_after)

    def succeeded(self) -> None:
        """A connection proved healthy: the next failure starts the backoff afresh."""
        self._failures = 0

    def attempts_in_window(self) -> int:
        now = self._clock()
        return sum(1 for t in self._attempts if now - t < self.window)
